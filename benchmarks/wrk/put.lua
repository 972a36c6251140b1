-- PUT objects of a fixed size under distinct names, with a pre-authenticated token.
-- usage: wrk ... -s put.lua http://host:port -- TOKEN /v1/AUTH_x/container SIZE_BYTES NAME_PREFIX
-- Names are PREFIX-<thread>-<counter>: distinct across threads and requests, so every PUT creates
-- a new object (no overwrite shortcuts) and a caller-chosen prefix keeps runs apart.
package.path = debug.getinfo(1, "S").source:match("^@(.*/)") .. "?.lua;" .. package.path
require("summary")

local thread_count = 0

function setup(thread)
   thread:set("thread_id", thread_count)
   thread_count = thread_count + 1
end

function init(args)
   assert(#args == 4, "args: TOKEN CONTAINER_PATH SIZE_BYTES NAME_PREFIX")
   container_path = args[2]
   name_prefix = args[4]
   body = string.rep("x", tonumber(args[3]))
   counter = 0
   wrk.headers["X-Auth-Token"] = args[1]
   wrk.headers["Content-Type"] = "application/octet-stream"
end

function request()
   counter = counter + 1
   local path = string.format("%s/%s-%d-%d", container_path, name_prefix, thread_id, counter)
   return wrk.format("PUT", path, nil, body)
end
