-- Prepended to every scenario script: per-thread status counts, a per-thread random seed,
-- and a done() that prints one JSON line (BENCH_JSON {...}) for bench/wrk.py to parse.
-- Settings come from the environment: BENCH_N, BENCH_TOKEN, BENCH_SEED, BENCH_* per scenario.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_index", #threads)
end

bench_n = tonumber(os.getenv("BENCH_N") or "1000")
statuses = {}

function bench_seed_random()
  math.randomseed(tonumber(os.getenv("BENCH_SEED") or "1") * 1000 + (thread_index or 0))
end

function bench_auth()
  local token = os.getenv("BENCH_TOKEN")
  if token and token ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. token
  end
end

function init(args)
  bench_seed_random()
  bench_auth()
  -- As HTTP clients commonly ask: answers of 1 KiB or more come compressed from ours.
  wrk.headers["Accept-Encoding"] = os.getenv("BENCH_ACCEPT_ENCODING") or "gzip, br"
  if bench_init then bench_init() end
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local counts = {}
  for _, thread in ipairs(threads) do
    for code, n in pairs(thread:get("statuses") or {}) do
      counts[code] = (counts[code] or 0) + n
    end
  end
  local parts = {}
  for code, n in pairs(counts) do
    table.insert(parts, string.format('"%d": %d', code, n))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"mean": %.1f, "max": %d, "p50": %d, "p90": %d, "p99": %d, "p999": %d}, ' ..
    '"statuses": {%s}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), table.concat(parts, ", ")))
end
