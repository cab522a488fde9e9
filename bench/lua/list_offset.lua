-- (b) One page of limit=100 at a random offset.
request = function()
  local offset = math.random(0, math.max(bench_n - 100, 0))
  return wrk.format("GET", "/employees/?limit=100&offset=" .. offset)
end
