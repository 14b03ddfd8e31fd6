-- wrk script for tests/bench/run.py: sends signed LeadShark requests that the driver wrote,
-- one file per wrk thread ($BENCH_REQUESTS.<n>, n = 0, 1, ...; one request per line: hex
-- signature, TAB, event type, TAB, compact JSON body), so every request of a run is unique
-- (a replayed body would be answered as a duplicate). Lines are read as they are needed:
-- a thread that loaded its whole share before starting would still be loading while the
-- others already send, and its CPU would count against the server. Prints one JSON summary
-- line prefixed `BENCH-JSON `, with how often a thread ran out of lines and started over.
--
--   BENCH_REQUESTS=requests.tsv wrk -t2 -c64 -d10s -s tests/bench/wrk.lua http://127.0.0.1:PORT/webhooks/leadshark

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

local path
local file
wrapped = 0

function init(args)
  path = os.getenv("BENCH_REQUESTS") .. "." .. id
  file = assert(io.open(path, "r"))
end

function request()
  local line = file:read("*l")
  if line == nil then
    file:close()
    file = assert(io.open(path, "r"))
    wrapped = wrapped + 1
    line = file:read("*l")
  end
  local signature, event, body = line:match("^(%x+)\t([^\t]+)\t(.*)$")
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/json",
    ["X-Webhook-Event"] = event,
    ["X-Webhook-Signature"] = signature,
  }, body)
end

function done(summary, latency, _)
  local w = 0
  for _, thread in ipairs(threads) do
    w = w + (thread:get("wrapped") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH-JSON {"requests":%d,"duration_us":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},"p50_us":%d,"p99_us":%d,"max_us":%d,"wrapped":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50.0), latency:percentile(99.0), latency.max, w))
end
