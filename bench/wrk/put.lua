-- PUT a fresh action per request (name prefix from WSK_PREFIX, a per-thread counter), overwrite=true.
-- Each PUT answers only after the decision and the projection (read-your-writes), so this is the write rate.
local threads = {}
local counter = 0
local nthreads = 0
id = 0  -- global: setup() sets it per thread

wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Basic " .. os.getenv("WSK_AUTH")
local body = '{"exec": {"kind": "python:3", "code": "def main(a):\\n    return a"}}'
local base = os.getenv("WSK_PATH")

function setup(thread)
  nthreads = nthreads + 1
  thread:set("id", nthreads)
  table.insert(threads, thread)
end

function init(args)
  codes = {}
end

function request()
  counter = counter + 1
  return wrk.format("PUT", string.format("%s/benchput-%d-%d?overwrite=true", base, id, counter), nil, body)
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
