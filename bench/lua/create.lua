-- (d) Create as admin; emp_ids are BENCH_ID_BASE + thread * 1000000 + a counter: never taken.
local counter = 0

function bench_init()
  wrk.headers["Content-Type"] = "application/json"
end

request = function()
  counter = counter + 1
  local emp_id = tonumber(os.getenv("BENCH_ID_BASE")) + thread_index * 1000000 + counter
  local body = string.format(
    '{"emp_id": %d, "emp_name": "Bench Person %d", "city": "Lisbon", ' ..
    '"country": "Portugal", "emp_dob": "1990-05-17"}', emp_id, emp_id)
  return wrk.format("POST", "/employees/", nil, body)
end
