-- attempts_of(rec): the attempts ("at") of a result record (JSON), or nil if
-- there is no record or it does not say.  (Included by scripts that carry a
-- task's attempts over into its new state: reset.lua, dead_requeue.lua.)
local function attempts_of(rec)
  if not rec then return nil end
  local ok, r = pcall(cjson.decode, rec)
  if ok and type(r) == 'table' and type(r.at) == 'number' then return r.at end
  return nil
end
