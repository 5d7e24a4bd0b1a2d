# bench/peers/sidekiq/client.rb -- the benchmark's client side for Sidekiq.
#
# Modes (see bench/harness.py): serial (AddJob.perform_async one at a time),
# bulk (Sidekiq::Client.push_bulk in batches), drain (fill, signal ready, then
# first result to last), latency (perform_async, then BLPOP the result).
# Output: one "key=value" line, as bench/throughput.c prints.
require "optparse"

opts = { mode: nil, n: nil, batch: 1000, warmup: 20, ready: nil, timeout: 300.0,
         redis: ENV.fetch("BENCH_REDIS", "127.0.0.1:6379") }
OptionParser.new do |o|
  o.on("--redis HOSTPORT") { |v| opts[:redis] = v }
  o.on("--mode MODE") { |v| opts[:mode] = v }
  o.on("-n N", Integer) { |v| opts[:n] = v }
  o.on("--batch N", Integer) { |v| opts[:batch] = v }
  o.on("--warmup N", Integer) { |v| opts[:warmup] = v }
  o.on("--ready FILE") { |v| opts[:ready] = v }
  o.on("--timeout S", Float) { |v| opts[:timeout] = v }
end.parse!
abort("usage: client.rb --mode serial|bulk|drain|latency -n N") unless opts[:mode] && opts[:n]
ENV["BENCH_REDIS"] = opts[:redis]
require_relative "bench_job"

def now = Process.clock_gettime(Process::CLOCK_MONOTONIC)

N = opts[:n]
DEADLINE = now + opts[:timeout]

def check_deadline(what)
  return if now <= DEADLINE
  warn "timeout: #{what}"
  exit 3
end

def results_count = Sidekiq.redis { |c| c.llen(RESULTS_KEY) }

def wait_count(target, interval)
  until results_count >= target
    check_deadline("results")
    sleep interval
  end
end

def wait_one
  until Sidekiq.redis { |c| c.blpop(RESULTS_KEY, timeout: 1) }
    check_deadline("result")
  end
end

def send_bulk(n, batch)
  (0...n).step(batch) do |done|
    m = [batch, n - done].min
    Sidekiq::Client.push_bulk("class" => AddJob, "args" => Array.new(m) { |k| [done + k, 1] })
    check_deadline("bulk send")
  end
end

def report(mode, n, kv)
  puts(["mode=#{mode}", "n=#{n}", *kv.map { |k, v| "#{k}=#{v.round}" }].join(" "))
  $stdout.flush
end

def warmup(count)
  count.times do |k|
    AddJob.perform_async(k, 1)
    wait_one
  end
end

case opts[:mode]
when "latency"
  warmup(opts[:warmup])
  lat = []
  t0 = now
  N.times do |k|
    s = now
    AddJob.perform_async(k, 1)
    wait_one
    lat << (now - s) * 1e6
  end
  total = now - t0
  lat.sort!
  pct = ->(q) { lat[[lat.size - 1, (lat.size * q).to_i].min] }
  report("latency", N, tasks_per_s: N / total, p50_us: pct.(0.50), p99_us: pct.(0.99))
when "serial", "bulk"
  warmup(opts[:warmup])
  Sidekiq.redis { |c| c.del(RESULTS_KEY) }
  t0 = now
  if opts[:mode] == "bulk"
    send_bulk(N, opts[:batch])
  else
    N.times do |k|
      AddJob.perform_async(k, 1)
      check_deadline("send") if (k % 1000).zero?
    end
  end
  t1 = now
  wait_count(N, 0.005)
  t2 = now
  report(opts[:mode], N, enqueue_per_s: N / (t1 - t0), tasks_per_s: N / (t2 - t0))
when "drain"
  t0 = now
  send_bulk(N, opts[:batch])
  t1 = now
  if opts[:ready]
    File.write("#{opts[:ready]}.tmp", "filled\n")
    File.rename("#{opts[:ready]}.tmp", opts[:ready])
  end
  wait_count(1, 0.001)
  t2 = now
  wait_count(N, 0.005)
  t3 = now
  report("drain", N, enqueue_per_s: N / (t1 - t0), tasks_per_s: (N - 1) / (t3 - t2))
else
  abort("unknown mode #{opts[:mode]}")
end
