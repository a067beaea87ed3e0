-- Written by router-bench (loadtest/router/src/wrk.rs) for one target.
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
--[[headers]]
-- The body is prefix .. id .. suffix, with an id of its own per request;
-- without a suffix it is the prefix alone, the same every time.
local prefix = --[[prefix]]
local suffix = --[[suffix]]
local expect = --[[expect]]

local threads = {}
-- Globals of each thread's Lua state, read back by done().
id = 0
unexpected = 0
first_unexpected = ""

function setup(thread)
  table.insert(threads, thread)
  -- Ids of different threads never meet.
  thread:set("id", #threads * 1000000000)
end

local constant = nil

function request()
  if suffix == nil then
    constant = constant or wrk.format(nil, nil, nil, prefix)
    return constant
  end
  id = id + 1
  return wrk.format(nil, nil, nil, prefix .. id .. suffix)
end

function response(status, headers, body)
  if status < 200 or status > 299 or not body or not string.find(body, expect, 1, true) then
    if unexpected == 0 then
      first_unexpected = status .. " " .. string.sub(body or "", 1, 300):gsub("\n", " ")
    end
    unexpected = unexpected + 1
  end
end

function done(summary, latency, requests)
  local bad, first = 0, ""
  for _, thread in ipairs(threads) do
    bad = bad + thread:get("unexpected")
    if first == "" then
      first = thread:get("first_unexpected")
    end
  end
  local e = summary.errors
  io.write(string.format(
    'router-bench-result {"requests":%.0f,"duration_us":%.0f,"unexpected":%.0f,"p50_us":%.0f,"p99_us":%.0f,'
      .. '"errors":{"connect":%.0f,"read":%.0f,"write":%.0f,"status":%.0f,"timeout":%.0f}}\n',
    summary.requests, summary.duration, bad, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
  if first ~= "" then
    io.write("router-bench-unexpected " .. first .. "\n")
  end
end
