-- wrk script for tests/bench/run.py: replays signed LeadShark requests that the driver
-- wrote to $BENCH_REQUESTS (one per line: hex signature, TAB, event type, TAB, compact JSON
-- body), round robin, and prints one JSON summary line prefixed `BENCH-JSON `.
--
--   BENCH_REQUESTS=requests.tsv wrk -t2 -c64 -d10s -s tests/bench/wrk.lua http://127.0.0.1:PORT/webhooks/leadshark

local requests = {}
local count = 0
local next_index = 0

function init(args)
  local path = os.getenv("BENCH_REQUESTS")
  if path == nil then
    error("set BENCH_REQUESTS to the file of signed requests")
  end
  for line in io.lines(path) do
    local signature, event, body = line:match("^(%x+)\t([^\t]+)\t(.*)$")
    if signature then
      count = count + 1
      requests[count] = wrk.format("POST", nil, {
        ["Content-Type"] = "application/json",
        ["X-Webhook-Event"] = event,
        ["X-Webhook-Signature"] = signature,
      }, body)
    end
  end
  if count == 0 then
    error("no signed requests in " .. path)
  end
end

function request()
  next_index = next_index % count + 1
  return requests[next_index]
end

function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    'BENCH-JSON {"requests":%d,"duration_us":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50.0), latency:percentile(99.0), latency.max))
end
