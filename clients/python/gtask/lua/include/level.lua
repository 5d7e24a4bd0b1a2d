-- level_of(body, from): the priority level (0, 1 or 2) of a task message
-- (JSON) that starts at byte `from` of body: its "pr" field, 0 when absent.
-- A message without the four bytes "pr": costs one string.find (no decode):
-- the sequence cannot occur inside a JSON string (a quote in one is
-- escaped), so it marks the key; the decode that follows reads it exactly.
-- (Included by scripts that queue a message of which only Redis has the
-- body: promote.lua, limit_slots.lua, limit_remove.lua.)
local function level_of(body, from)
  if not string.find(body, '"pr":', from, true) then return 0 end
  local ok, t = pcall(cjson.decode, from > 1 and string.sub(body, from) or body)
  if ok and type(t) == 'table' and (t.pr == 1 or t.pr == 2) then return t.pr end
  return 0
end
