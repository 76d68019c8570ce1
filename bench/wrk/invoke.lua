-- POST an action (path and query come from the URL), with the key from WSK_AUTH (base64 user:key).
-- done() prints one JSON line: latency percentiles (us), requests, duration and status counts.
local threads = {}

wrk.method = "POST"
wrk.body = '{"x": 1}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Basic " .. os.getenv("WSK_AUTH")

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  codes = {}
end

function response(status, headers, body)
  codes[status] = (codes[status] or 0) + 1
end

function done(summary, latency, requests)
  local agg = {}
  for _, t in ipairs(threads) do
    for code, n in pairs(t:get("codes")) do
      agg[code] = (agg[code] or 0) + n
    end
  end
  local parts = {}
  for code, n in pairs(agg) do
    table.insert(parts, string.format('"%d": %d', code, n))
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "p50": %d, "p90": %d, "p99": %d, "mean": %.1f, "max": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, "codes": {%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max, e.connect, e.read, e.write, e.status, e.timeout, table.concat(parts, ", ")))
end
