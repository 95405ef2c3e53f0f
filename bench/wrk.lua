-- wrk script shared by every scenario of bench/run.sh. Configured through the environment
-- (wrk passes no arguments to a thread's script until init, which is too late to decide
-- whether `request` exists: wrk pre-builds one fixed request when it does not):
--   BENCH_BODY_FILE    POST this file (else GET)
--   BENCH_CONTENT_TYPE Content-Type of the POST body (default application/xml)
--   BENCH_AUTH         value of the Authorization header
--   BENCH_HEADER       one more header, "Name: value" (e.g. X-Speke-Version: 2.0)
--   BENCH_MODE         "new-content": build a fresh CPIX request (new contentId and kid) per request;
--                      "stored": ask for a random one of the keys bench/fill stored
--   BENCH_TEMPLATE     CPIX template with @CONTENT_ID@ and @KID@ (new-content and stored modes)
--   BENCH_NONCE        8 hex digits unique to this wrk run (new-content mode)
--   BENCH_STORED_COUNT how many keys bench/fill stored (stored mode)
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
  wrk.headers["Content-Type"] = os.getenv("BENCH_CONTENT_TYPE") or "application/xml"
end

local extra_header = os.getenv("BENCH_HEADER")
if extra_header and extra_header ~= "" then
  local name, value = extra_header:match("^([^:]+):%s*(.*)$")
  wrk.headers[assert(name, "BENCH_HEADER is not 'Name: value'")] = value
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

if os.getenv("BENCH_MODE") == "stored" then
  local template = read_file(assert(os.getenv("BENCH_TEMPLATE"), "BENCH_TEMPLATE not set"))
  -- (parenthesized: assert returns its message too, which tonumber would take as the base)
  local count = tonumber((assert(os.getenv("BENCH_STORED_COUNT"), "BENCH_STORED_COUNT not set")))

  function init(args)
    math.randomseed(os.time() * 1000 + thread_number)
  end

  -- bench/fill's key n: kid f1110000-0000-4000-8000-<n in 12 hex digits>, content fill-<n / 4>.
  function request()
    local n = math.random(0, count - 1)
    local body = template:gsub("@KID@", string.format("f1110000-0000-4000-8000-%012x", n))
    body = body:gsub("@CONTENT_ID@", string.format("fill-%d", math.floor(n / 4)))
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
