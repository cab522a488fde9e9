-- The memory soak: a mix of reads and writes as admin (70% one employee, 15% a page at a random
-- offset, 10% the city filter, 5% PATCH).
local terms = {}
for term in string.gmatch(os.getenv("BENCH_CITY_TERMS") or "on", "[^,]+") do
  table.insert(terms, term)
end

function bench_init()
  wrk.headers["Content-Type"] = "application/json"  -- harmless on the GETs
end

request = function()
  local pick = math.random(1, 100)
  if pick <= 70 then
    return wrk.format("GET", "/employees/" .. math.random(1, bench_n))
  elseif pick <= 85 then
    local offset = math.random(0, math.max(bench_n - 100, 0))
    return wrk.format("GET", "/employees/?limit=100&offset=" .. offset)
  elseif pick <= 95 then
    local term = terms[math.random(1, #terms)]
    return wrk.format("GET", "/employees/?city=" .. term .. "&sort_by=emp_name&order=desc&limit=20")
  end
  return wrk.format("PATCH", "/employees/" .. math.random(1, bench_n), nil, '{"country": "Portugal"}')
end
