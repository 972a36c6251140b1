-- GET objects chosen at random from a pre-populated set PREFIX-0 .. PREFIX-(COUNT-1).
-- usage: wrk ... -s get.lua http://host:port -- TOKEN /v1/AUTH_x/container NAME_PREFIX COUNT
package.path = debug.getinfo(1, "S").source:match("^@(.*/)") .. "?.lua;" .. package.path
require("summary")

local thread_count = 0

function setup(thread)
   thread:set("thread_id", thread_count)
   thread_count = thread_count + 1
end

function init(args)
   assert(#args == 4, "args: TOKEN CONTAINER_PATH NAME_PREFIX COUNT")
   container_path = args[2]
   name_prefix = args[3]
   object_count = tonumber(args[4])
   math.randomseed(1000 + thread_id)  -- reproducible, different per thread
   wrk.headers["X-Auth-Token"] = args[1]
end

function request()
   local index = math.random(0, object_count - 1)
   return wrk.format("GET", string.format("%s/%s-%d", container_path, name_prefix, index))
end
