-- (c) Filtered by a city substring (BENCH_CITY_TERMS, comma-separated), sorted by emp_name desc.
local terms = {}
for term in string.gmatch(os.getenv("BENCH_CITY_TERMS") or "on", "[^,]+") do
  table.insert(terms, term)
end

request = function()
  local term = terms[math.random(1, #terms)]
  return wrk.format("GET", "/employees/?city=" .. term .. "&sort_by=emp_name&order=desc&limit=20")
end
