-- wrk script shared by every scenario of bench/run.sh. Configured through the environment
-- (wrk passes no arguments to a thread's script until init, which is too late to decide
-- whether `request` exists: wrk pre-builds one fixed request when it does not):
--   BENCH_BODY_FILE  POST this file (else GET)
--   BENCH_AUTH       value of the Authorization header
--   BENCH_MODE       "new-content": build a fresh CPIX request (new contentId and kid) per request
--   BENCH_TEMPLATE   CPIX template with @CONTENT_ID@ and @KID@ (new-content mode)
--   BENCH_NONCE      8 hex digits unique to this wrk run (new-content mode)
-- done() prints one `BENCH ...` line that run.sh parses.

local function read_file(path)
  local file = assert(io.open(path, "rb"))
  local text = file:read("*a")
  file:close()
  return text
end

local auth = os.getenv("BENCH_AUTH")
if auth then
  wrk.headers["Authorization"] = auth
end

local body_file = os.getenv("BENCH_BODY_FILE")
if body_file then
  wrk.method = "POST"
  wrk.body = read_file(body_file)
  wrk.headers["Content-Type"] = "application/xml"
end

-- Threads are numbered by setup() in the main script state; the number reaches each
-- thread's own state as the global `thread_number`.
local threads_started = 0
function setup(thread)
  threads_started = threads_started + 1
  thread:set("thread_number", threads_started)
end

if os.getenv("BENCH_MODE") == "new-content" then
  local template = read_file(assert(os.getenv("BENCH_TEMPLATE"), "BENCH_TEMPLATE not set"))
  local nonce = tonumber(assert(os.getenv("BENCH_NONCE"), "BENCH_NONCE not set"), 16)
  local counter = 0

  -- Unique per request across threads and runs: nonce (per run) + thread number + counter.
  -- The kid is a well-formed UUID (version 4 and variant nibbles set).
  function request()
    counter = counter + 1
    local kid = string.format("%08x-%04x-4000-8000-%012x", nonce, thread_number, counter)
    local content_id = string.format("bench-new-%08x-%d-%d", nonce, thread_number, counter)
    local body = template:gsub("@KID@", kid)
    body = body:gsub("@CONTENT_ID@", content_id)
    return wrk.format("POST", nil, nil, body)
  end
end

function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local errors = summary.errors
  io.write(string.format(
    "BENCH requests=%d seconds=%.3f rps=%.1f p50_us=%d p99_us=%d http_errors=%d socket_errors=%d\n",
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50), latency:percentile(99),
    errors.status, errors.connect + errors.read + errors.write + errors.timeout))
end
