-- (e) PATCH one field of a random employee as admin.
local cities = {"Lisbon", "Porto", "Madrid", "Oslo", "Vienna", "Dublin"}

function bench_init()
  wrk.headers["Content-Type"] = "application/json"
end

request = function()
  local body = string.format('{"city": "%s"}', cities[math.random(1, #cities)])
  return wrk.format("PATCH", "/employees/" .. math.random(1, bench_n), nil, body)
end
