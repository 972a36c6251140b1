-- Shared by put.lua and get.lua: after the run, print one machine-readable line that
-- benchmarks/compare_swift.py parses. Latencies are in microseconds; "status" counts responses
-- that were not 2xx/3xx, which the harness subtracts from the successful operations.
function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, "read": %d, ' ..
      '"write": %d, "status": %d, "timeout": %d, "p50_us": %d, "p99_us": %d}\n',
      summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
      e.status, e.timeout, latency:percentile(50), latency:percentile(99)))
end
