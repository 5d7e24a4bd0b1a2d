# bench/peers/sidekiq/bench_job.rb -- the Sidekiq job of the benchmark, and the
# Redis settings both sides use.
#
# Sidekiq has no result backend: the idiomatic way to hand a result to a client
# is for the job to write it to Redis itself.  AddJob pushes "jid:sum" onto one
# list (a single RPUSH per job): the client counts it with LLEN for throughput
# and BLPOPs it for latency.  The hiredis driver is Sidekiq's fastest redis-rb
# driver; INFO logging (two log lines per job) is turned down to WARN.
require "sidekiq"

Redis.silence_deprecations = true if Redis.respond_to?(:silence_deprecations=)

BENCH_REDIS_URL = "redis://#{ENV.fetch('BENCH_REDIS', '127.0.0.1:6379')}/0"
RESULTS_KEY = "bench:results"

Sidekiq.configure_server do |config|
  config.redis = { url: BENCH_REDIS_URL, driver: :hiredis }
  config.logger.level = Logger::WARN
end

Sidekiq.configure_client do |config|
  config.redis = { url: BENCH_REDIS_URL, driver: :hiredis, size: 1 }
end

class AddJob
  include Sidekiq::Worker
  sidekiq_options queue: "bench"

  def perform(a, b)
    Sidekiq.redis { |c| c.rpush(RESULTS_KEY, "#{jid}:#{a + b}") }
  end
end
