# Sidekiq harness: the job classes (`sidekiq -r ./sidekiq_peer.rb` loads this
# file) and the client side, run by bench/peers/run.py as
#   ruby sidekiq_peer.rb fill N [MS] | enqueue N single|bulk | ai N | paced MS RATE:S,.. |
#                        latency N GAP_MS | long SECONDS TAG
# REDIS_URL names the Redis (Sidekiq's own variable). Sidekiq keeps no
# record of a finished job and flushes its processed counter only every few
# seconds, so the no-op job counts itself done with one INCR.
require "sidekiq"

class Noop
  include Sidekiq::Worker
  def perform
    Sidekiq.redis { |c| c.incr("peers:done") }
  end
end

class SleepMs
  include Sidekiq::Worker
  def perform(ms)
    sleep(ms / 1000.0)
    Sidekiq.redis { |c| c.incr("peers:done") }
  end
end

class Stamp
  include Sidekiq::Worker
  def perform(t_us)
    now = Process.clock_gettime(Process::CLOCK_REALTIME, :microsecond)
    Sidekiq.redis { |c| c.rpush("peers:lat", now - t_us) }
  end
end

class Long
  include Sidekiq::Worker
  def perform(seconds, tag)
    Sidekiq.redis { |c| c.rpush("peers:starts:#{tag}", "#{Time.now.to_f} #{Process.pid}") }
    sleep(seconds)
  end
end

# Sidekiq's own retry settings, unchanged: 25 retries, its polynomial
# back-off ((count ** 4) + 15 + rand(10) * (count + 1) s), then the dead set.
class CallAi
  include Sidekiq::Worker
  def perform
    require "net/http"
    uri = URI(ENV.fetch("PEERS_AI_URL"))
    res = Net::HTTP.post(uri, '{"prompt": "hi"}', "Content-Type" => "application/json")
    raise "AI service answered #{res.code}" unless res.is_a?(Net::HTTPSuccess)
    Sidekiq.redis { |c| c.incr("peers:done") }
  end
end

def now_us
  Process.clock_gettime(Process::CLOCK_REALTIME, :microsecond)
end

if $PROGRAM_NAME == __FILE__
  cmd = ARGV[0]
  case cmd
  when "fill"
    n = ARGV[1].to_i
    klass, args = ARGV[2] ? [SleepMs, [ARGV[2].to_i]] : [Noop, []]
    (0...n).step(1000) do |i|
      Sidekiq::Client.push_bulk("class" => klass, "args" => Array.new([1000, n - i].min) { args })
    end
  when "enqueue"
    n = ARGV[1].to_i
    Noop.perform_async # connect first
    Sidekiq.redis { |c| c.set("peers:done", 0) }
    t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    if ARGV[2] == "bulk"
      (0...n).step(1000) do |i|
        Sidekiq::Client.push_bulk("class" => Noop, "args" => Array.new([1000, n - i].min) { [] })
      end
    else
      n.times { Noop.perform_async }
    end
    puts format("%.6f", Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0)
  when "latency"
    n, gap = ARGV[1].to_i, ARGV[2].to_i / 1000.0
    n.times do
      Stamp.perform_async(now_us)
      sleep(gap)
    end
  when "paced"
    ms = ARGV[1].to_i
    Sidekiq.redis { |c| c.ping }
    t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    $stdout.puts "go"
    $stdout.flush
    ARGV[2].split(",").each do |phase|
      rate, secs = phase.split(":").map(&:to_f)
      (rate * secs).to_i.times do |k|
        d = t0 + k / rate - Process.clock_gettime(Process::CLOCK_MONOTONIC)
        sleep(d) if d > 0
        SleepMs.perform_async(ms)
      end
      t0 += secs
    end
  when "ai"
    n = ARGV[1].to_i
    (0...n).step(1000) do |i|
      Sidekiq::Client.push_bulk("class" => CallAi, "args" => Array.new([1000, n - i].min) { [] })
    end
  when "long"
    Long.perform_async(ARGV[1].to_f, ARGV[2])
  else
    abort "sidekiq_peer: unknown command #{cmd}"
  end
end
