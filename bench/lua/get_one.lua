-- (a) GET one employee by a random emp_id in 1..N as a regular user.
request = function()
  return wrk.format("GET", "/employees/" .. math.random(1, bench_n))
end
