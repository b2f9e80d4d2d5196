#!lua name=corral_floor
-- bench/bench_floor.py's library: per job the same redis.call()s as
-- corral's corral_enqueue, corral_reserve and corral_ack make on a queue
-- without a service, one job per call (the calls bench_queue.c lists per
-- job, "redis.call()s per job"), with the same keys, record fields and
-- reply shapes, but none of corral's logic: no settings, no checks, no
-- options, no breaker. What it costs is the floor of the documented layout
-- (docs/protocol.md, "Keys") for the Lua engine of Redis Functions: what
-- any library keeping that layout pays per job before its own code runs.
-- The _tenant functions make the calls of a job whose tenant has no other
-- job waiting (tenants.lua: the tenant's list, its place in the turn, the
-- level's count). The floor_lean_ functions leave out the calls a changed
-- contract could drop (docs/benchmarks.md, "Sixth round"): the totals
-- K:ctr written with every job (4), the wake marker of every enqueue (1)
-- and the reserve's closing EXISTS (1): 24 calls per job. Not part of
-- corral; loaded by the benchmark alone.

local rcall

-- A job's record as corral_enqueue writes it (enqueue.lua, enqueue_write):
-- id (2), payload (8), the clock (22, 24, 26, 28) and tenant (30) change.
local REC = {'id', '', 'queue', 'q', 'state', 'queued', 'payload', '', 'priority', 'normal', 'prio',
             '1', 'service', '', 'attempts', '0', 'max_attempts', '5', 'run', '0', 'timeout_ms',
             '60000', 'created_ms', '', 'run_at_ms', '', 'queued_ms', '', 'created_us', '',
             'tenant', ''}

local function enqueue(K, payload, tenant, lean)
    rcall = rcall or redis.call
    rcall('HMGET', K .. ':conf', 'packed', 'tenanted', 'paused')
    local id = string.format('%d', rcall('INCR', K .. ':seq'))
    local t = rcall('TIME')
    REC[2], REC[8], REC[22], REC[24], REC[26], REC[28] = id, payload, t[1], t[1], t[1], t[2]
    REC[30] = tenant
    rcall('HSET', K .. ':job:' .. id, unpack(REC, 1, tenant and 30 or 28))
    if tenant then
        if rcall('RPUSH', K .. ':t:1:' .. tenant, id) == 1 then
            rcall('RPUSH', K .. ':tq:1', tenant)
        end
        rcall('HINCRBY', K .. ':tn', '#1', '1')
    else
        rcall('RPUSH', K .. ':q:1', id)
    end
    rcall('HINCRBY', K .. ':st:1', 'enq', '1')
    if not lean then
        rcall('RPUSH', K .. ':wake', '1')
        rcall('HINCRBY', K .. ':ctr', 'enq', '1')
    end
    return id
end

local function lease(K, id, worker, t)
    local jk = K .. ':job:' .. id
    local j = rcall('HMGET', jk, 'attempts', 'max_attempts', 'run', 'timeout_ms', 'priority',
                    'service', 'payload', 'tokens', 'deadline_at_ms')
    rcall('HSET', jk, 'state', 'active', 'attempts', '1', 'run', '1', 'started_ms', t[1],
          'started_us', t[2], 'worker', worker)
    rcall('ZADD', K .. ':active', t[1], id)
    return {{id, '1', 1, 5, 60000, j[5], j[6], j[7]}}
end

local function reserve(K, worker, lean)
    rcall = rcall or redis.call
    rcall('HMGET', K .. ':conf', 'packed', 'tenanted', 'paused', 'due')
    local t = rcall('TIME')
    rcall('LPOP', K .. ':q:0', '1') -- the level above, empty
    local ids = rcall('LPOP', K .. ':q:1', '1')
    local out = lease(K, ids[1], worker, t)
    if not lean then
        rcall('EXISTS', K .. ':q:0', K .. ':q:1', K .. ':q:2')
    end
    return out
end

local function reserve_tenant(K, worker)
    rcall = rcall or redis.call
    rcall('HMGET', K .. ':conf', 'packed', 'tenanted', 'paused', 'due')
    local t = rcall('TIME')
    rcall('EXISTS', K .. ':tq:0', K .. ':q:0') -- the level above, empty
    local tenant = rcall('LPOP', K .. ':tq:1')
    local lk = K .. ':t:1:' .. tenant
    local ids = rcall('LPOP', lk, '2')
    if ids[2] then -- more of the tenant's: back in its list and the turn
        rcall('LPUSH', lk, ids[2])
        rcall('RPUSH', K .. ':tq:1', tenant)
    end
    rcall('HINCRBY', K .. ':tn', '#1', '-1')
    return lease(K, ids[1], worker, t)
end

-- An ack's statistics: the outcome, the histogram's bucket and the time.
local STATS = {{'done', '1'}, {'h3', '1'}, {'ps', '5'}}

local function ack(K, worker, id, result, lean)
    rcall = rcall or redis.call
    rcall('HGET', K .. ':conf', 'packed')
    local t = rcall('TIME')
    local jk, fk = K .. ':job:' .. id, K .. ':fin:' .. id
    rcall('HMGET', jk, 'state', 'run', 'worker', 'started_ms', 'unique_key')
    rcall('HSET', jk, 'state', 'done', 'finished_ms', t[1], 'result', result)
    rcall('RPUSH', fk, 'done')
    rcall('PEXPIRE', jk, '3600000')
    rcall('PEXPIRE', fk, '3600000')
    rcall('ZREM', K .. ':active', id)
    -- the statistics, in the minute and the totals
    for _, f in ipairs(STATS) do
        rcall('HINCRBY', K .. ':st:1', f[1], f[2])
        if not lean then
            rcall('HINCRBY', K .. ':ctr', f[1], f[2])
        end
    end
    return {'done'}
end

-- KEYS[1] queue key; ARGV as corral's: payload [tenant] / worker / worker id run result.
redis.register_function('floor_enqueue', function(keys, args)
    return enqueue(keys[1], args[1], args[2])
end)
redis.register_function('floor_reserve', function(keys, args)
    return reserve(keys[1], args[1])
end)
redis.register_function('floor_reserve_tenant', function(keys, args)
    return reserve_tenant(keys[1], args[1])
end)
redis.register_function('floor_ack', function(keys, args)
    return ack(keys[1], args[1], args[2], args[4])
end)
redis.register_function('floor_lean_enqueue', function(keys, args)
    return enqueue(keys[1], args[1], nil, true)
end)
redis.register_function('floor_lean_reserve', function(keys, args)
    return reserve(keys[1], args[1], true)
end)
redis.register_function('floor_lean_ack', function(keys, args)
    return ack(keys[1], args[1], args[2], args[4], true)
end)
