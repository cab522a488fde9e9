-- (f) and the storm of (h): OAuth2 password-form login with BENCH_USERNAME / BENCH_PASSWORD.
local body = "username=" .. os.getenv("BENCH_USERNAME") .. "&password=" .. os.getenv("BENCH_PASSWORD")

function bench_init()
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
end

request = function()
  return wrk.format("POST", "/auth/token", nil, body)
end
