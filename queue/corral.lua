#!lua name=corral
-- corral's Redis Function library: every state change of a job is one call
-- here, so it is atomic and the same for corrald, corral-worker, corralctl and
-- application services in any language. Embedded into the programs at build
-- time and loaded with FUNCTION LOAD REPLACE when missing or older.
--
-- Every function takes one key: the queue, either bare ("prompts", default
-- prefix "corral") or as "<prefix>:{<queue>}". All keys of a queue share the
-- hash tag {<queue>}, so one queue lives in one Redis Cluster slot. Keys of a
-- queue K = "<prefix>:{<queue>}" (docs/protocol.md lists them too):
--   K:conf            hash   queue settings, written by corral_declare
--   K:seq             string job id counter
--   K:job:<id>        hash   the job
--   K:q:<level>       list   ready job ids of one priority level (0 = highest), FIFO
--   K:active          zset   leased job ids, scored by lease deadline (ms)
--   K:sched           zset   delayed and retrying job ids, scored by run_at (ms)
--   K:dead            list   dead job ids, newest first
--   K:wake            list   markers that idle workers BLPOP on
--   K:fin:<id>        list   holds the final state once the job ended (await with BLMOVE)
--   K:uniq:<key>      string unique key -> job id
--   K:paused          string present while the queue is paused
--   K:wrr             hash   weighted round-robin state
--   K:st:<minute>     hash   per-minute counters and processing-time histogram
-- Outside the queue's slot (single-Redis deployments only): <prefix>:queues,
-- the set of declared queue names, written by corral_declare alone.

local LIB_VERSION = 1

local MAX_BATCH = 1000
local STATS_TTL_S = 7200
local WAKE_CAP = 1024
-- Upper bounds (ms) of the processing-time histogram buckets; the last is open.
local HIST = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 30000,
              60000, 120000, 300000, 600000}

-- Raises an error reply for bad input. Every function validates before it
-- writes, so a refused call changes nothing.
local function fail(fmt, ...)
    error('ERR ' .. string.format(fmt, ...), 0)
end

-- Turns fail()'s errors into plain error replies (without the script
-- location Redis appends to raised errors); anything else is re-raised.
local function api(f)
    return function(keys, args)
        local ok, r = pcall(f, keys, args)
        if ok then
            return r
        end
        if type(r) == 'string' and r:sub(1, 4) == 'ERR ' then
            return redis.error_reply(r)
        end
        error(r, 0)
    end
end

local function now_ms()
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Microseconds, for the latency fields (created_us, started_us) that
-- benchmarks and operators use to see sub-millisecond pick-up times.
local function now_us()
    local t = redis.call('TIME')
    return t[1] .. string.format('%06d', tonumber(t[2]))
end

local function valid_name(s)
    return type(s) == 'string' and #s >= 1 and #s <= 64 and not s:find('[^%w_%.:%-]')
end

-- Returns K and the queue name from the one key argument.
local function queue_key(key)
    if key == nil then
        fail('expected one key: the queue name')
    end
    local prefix, q = key:match('^(.-):{(.*)}$')
    if prefix == nil then
        prefix, q = 'corral', key
    end
    if not valid_name(q) then
        fail('bad queue name "%s": use 1-64 characters of A-Z a-z 0-9 _ . : -', q:sub(1, 80))
    end
    if not valid_name(prefix) then
        fail('bad key prefix "%s"', prefix:sub(1, 80))
    end
    return prefix .. ':{' .. q .. '}', q, prefix
end

local function split(s)
    local out = {}
    if s == nil or s == '' then
        return out
    end
    for item in string.gmatch(s, '[^,]+') do
        out[#out + 1] = item
    end
    return out
end

local CONF_FIELDS = {'priorities', 'order', 'weights', 'max_attempts', 'backoff_base_ms',
                     'backoff_cap_ms', 'timeout_ms', 'lease_ms', 'result_ttl_ms', 'max_payload',
                     'max_result', 'service'}

local function load_conf(K, q)
    local v = redis.call('HMGET', K .. ':conf', unpack(CONF_FIELDS))
    if not v[1] then
        fail('unknown queue "%s": no corrald or corralctl has declared it (corral_declare)', q)
    end
    local c = {priorities = split(v[1]), order = v[2], weights = {}}
    for i, w in ipairs(split(v[3])) do
        c.weights[i] = tonumber(w)
    end
    c.max_attempts = tonumber(v[4])
    c.backoff_base_ms = tonumber(v[5])
    c.backoff_cap_ms = tonumber(v[6])
    c.timeout_ms = tonumber(v[7])
    c.lease_ms = tonumber(v[8])
    c.result_ttl_ms = tonumber(v[9])
    c.max_payload = tonumber(v[10])
    c.max_result = tonumber(v[11])
    c.service = v[12] or ''
    return c
end

local function default_level(c)
    return math.floor((#c.priorities - 1) / 2)
end

local function job_key(K, id)
    return K .. ':job:' .. id
end

-- Per-minute statistics. Each counter's first increment in a bucket sets the
-- TTL, so no call pays for an EXPIRE on the hot path more than a few times a
-- minute.
local function stat(K, now, field, n)
    local bk = K .. ':st:' .. math.floor(now / 60000)
    if redis.call('HINCRBY', bk, field, n or 1) == (n or 1) then
        redis.call('EXPIRE', bk, STATS_TTL_S)
    end
    return bk
end

local function stat_proc(K, now, field, started)
    local bk = stat(K, now, field)
    local ms = now - (tonumber(started) or now)
    if ms < 0 then
        ms = 0
    end
    local b = #HIST
    for i, hi in ipairs(HIST) do
        if ms <= hi then
            b = i - 1
            break
        end
    end
    redis.call('HINCRBY', bk, 'h' .. b, 1)
    redis.call('HINCRBY', bk, 'ps', ms)
    redis.call('HINCRBY', bk, 'pn', 1)
end

-- Pushes up to n markers for idle workers, unless the queue is paused
-- (paused queues hand out nothing, so waking anyone would be for nothing).
local function wake(K, n)
    if n <= 0 or redis.call('EXISTS', K .. ':paused') == 1 then
        return
    end
    local wk = K .. ':wake'
    if redis.call('LLEN', wk) < WAKE_CAP then
        local marks = {}
        for i = 1, math.min(n, 64) do
            marks[i] = '1'
        end
        redis.call('RPUSH', wk, unpack(marks))
    end
end

-- A job's priority level, clamped to the queue's current levels (a
-- redeclare may have removed the job's level while it was scheduled or dead).
local function level_of(c, jk)
    local level = tonumber(redis.call('HGET', jk, 'prio')) or default_level(c)
    if level > #c.priorities - 1 then
        level = #c.priorities - 1
        redis.call('HSET', jk, 'prio', level, 'priority', c.priorities[level + 1])
    end
    return level
end

local function make_ready(K, id, level, front)
    redis.call(front and 'LPUSH' or 'RPUSH', K .. ':q:' .. level, id)
end

-- Moves a job to a final state and publishes it to awaiters.
local function finish(K, c, id, jk, state, now, fields, keep)
    redis.call('HSET', jk, 'state', state, 'finished_ms', now, unpack(fields))
    local fk = K .. ':fin:' .. id
    redis.call('DEL', fk)
    redis.call('RPUSH', fk, state)
    if not keep then
        local ttl = c.result_ttl_ms
        redis.call('PEXPIRE', jk, ttl)
        redis.call('PEXPIRE', fk, ttl)
        local uk = redis.call('HGET', jk, 'unique_key')
        if uk then
            redis.call('PEXPIRE', K .. ':uniq:' .. uk, ttl)
        end
    end
end

local function to_dead(K, c, id, jk, now, err, lost)
    redis.call('LPUSH', K .. ':dead', id)
    finish(K, c, id, jk, 'dead', now, {'error', err, 'lost', lost and '1' or '0'}, true)
    stat(K, now, 'dead')
end

-- Removes a job id from whichever container its state says it is in.
local function unlink(K, jk, id, state)
    if state == 'queued' then
        local level = redis.call('HGET', jk, 'prio')
        redis.call('LREM', K .. ':q:' .. level, 1, id)
    elseif state == 'scheduled' then
        redis.call('ZREM', K .. ':sched', id)
    elseif state == 'active' then
        redis.call('ZREM', K .. ':active', id)
    elseif state == 'dead' then
        redis.call('LREM', K .. ':dead', 1, id)
    end
end

-- The current run of a job may still report its outcome when no newer run
-- has started: the run token matches and the job has not ended, or ended
-- dead only because its lease was lost. Returns the state, or nil (stale).
local function current_run(jk, run)
    local j = redis.call('HMGET', jk, 'state', 'run', 'lost')
    local state = j[1]
    if not state or j[2] ~= run then
        return nil
    end
    if state == 'done' or state == 'cancelled' then
        return nil
    end
    if state == 'dead' and j[3] ~= '1' then
        return nil
    end
    return state
end

local function promote_due(K, c, now, limit)
    local ids = redis.call('ZRANGEBYSCORE', K .. ':sched', '-inf', now, 'LIMIT', 0, limit)
    if #ids == 0 then
        return 0
    end
    redis.call('ZREM', K .. ':sched', unpack(ids))
    for _, id in ipairs(ids) do
        local jk = job_key(K, id)
        if redis.call('EXISTS', jk) == 1 then
            redis.call('HSET', jk, 'state', 'queued', 'queued_ms', now)
            make_ready(K, id, level_of(c, jk), false)
        end
    end
    wake(K, #ids)
    return #ids
end

-- Full jitter. Redis seeds Lua's generator identically for every call, so
-- corral_fail reseeds it from the server clock once per call.
local function backoff_ms(c, attempts)
    local hi = c.backoff_base_ms * (2 ^ math.min(attempts, 40))
    if hi > c.backoff_cap_ms then
        hi = c.backoff_cap_ms
    end
    local lo = c.backoff_base_ms
    if hi <= lo then
        return lo
    end
    return lo + math.floor(math.random() * (hi - lo + 1))
end

local function int_arg(v, what, lo, hi)
    local n = tonumber(v)
    if n == nil or n ~= math.floor(n) or n < lo or n > hi then
        fail('%s must be an integer from %d to %d, got %s', what, lo, hi, tostring(v):sub(1, 40))
    end
    return n
end

---------------------------------------------------------------------------
-- corral_version: no keys, no arguments -> the library version (integer).
local function corral_version()
    return LIB_VERSION
end

-- corral_declare: KEYS[1] queue; ARGV[1] settings JSON {priorities, order,
-- weights, max_attempts, backoff_base_ms, backoff_cap_ms, timeout_ms, lease_ms,
-- result_ttl_ms, max_payload, max_result, service} -> "OK". Registers or
-- updates a queue. Jobs of priority levels that no longer exist move to the
-- lowest remaining level.
local function corral_declare(keys, args)
    local K, q, prefix = queue_key(keys[1])
    local ok, s = pcall(cjson.decode, args[1] or '')
    if not ok or type(s) ~= 'table' then
        fail('queue "%s": settings must be a JSON object', q)
    end
    local prios = s.priorities or {'high', 'normal', 'low'}
    if type(prios) ~= 'table' or #prios < 1 or #prios > 16 then
        fail('queue "%s": priorities must be a list of 1 to 16 names', q)
    end
    for _, p in ipairs(prios) do
        if not valid_name(p) or p:find(',') then
            fail('queue "%s": bad priority name "%s"', q, tostring(p))
        end
    end
    local order = s.order or 'strict'
    if order ~= 'strict' and order ~= 'weighted' then
        fail('queue "%s": order must be strict or weighted', q)
    end
    local weights = {}
    for i = 1, #prios do
        local w = (type(s.weights) == 'table' and s.weights[i]) or 1
        weights[i] = tostring(int_arg(w, 'weight', 1, 1000000))
    end
    local fields = {
        'priorities', table.concat(prios, ','), 'order', order, 'weights',
        table.concat(weights, ','),
        'max_attempts', int_arg(s.max_attempts or 5, 'max_attempts', 1, 1000),
        'backoff_base_ms', int_arg(s.backoff_base_ms or 1000, 'backoff_base_ms', 1, 2 ^ 40),
        'backoff_cap_ms', int_arg(s.backoff_cap_ms or 300000, 'backoff_cap_ms', 1, 2 ^ 40),
        'timeout_ms', int_arg(s.timeout_ms or 60000, 'timeout_ms', 1, 2 ^ 40),
        'lease_ms', int_arg(s.lease_ms or 30000, 'lease_ms', 100, 2 ^ 40),
        'result_ttl_ms', int_arg(s.result_ttl_ms or 86400000, 'result_ttl_ms', 1000, 2 ^ 45),
        'max_payload', int_arg(s.max_payload or 1048576, 'max_payload', 1, 512 * 1048576),
        'max_result', int_arg(s.max_result or 1048576, 'max_result', 1, 512 * 1048576),
        'service', type(s.service) == 'string' and s.service or ''
    }
    local old = redis.call('HGET', K .. ':conf', 'priorities')
    if old then
        local nold = #split(old)
        local last = #prios - 1
        for level = #prios, nold - 1 do
            local src = K .. ':q:' .. level
            for _, id in ipairs(redis.call('LRANGE', src, 0, -1)) do
                redis.call('HSET', job_key(K, id), 'prio', last, 'priority', prios[#prios])
                redis.call('RPUSH', K .. ':q:' .. last, id)
            end
            redis.call('DEL', src)
        end
    end
    redis.call('HSET', K .. ':conf', unpack(fields))
    redis.call('DEL', K .. ':wrr')
    redis.call('SADD', prefix .. ':queues', q)
    return 'OK'
end

local OPTION_KEYS = {priority = true, delay_ms = true, max_attempts = true, timeout_ms = true,
                     service = true, unique_key = true}

-- corral_enqueue: KEYS[1] queue; ARGV[1] payload (JSON text); ARGV[2]
-- optional options JSON {priority (name or index), delay_ms, max_attempts,
-- timeout_ms, service, unique_key} -> the job id (string). With unique_key, a
-- job whose record still exists with that key is returned instead.
local function corral_enqueue(keys, args)
    local K, q = queue_key(keys[1])
    local c = load_conf(K, q)
    local payload = args[1]
    if payload == nil then
        fail('queue "%s": missing payload', q)
    end
    if #payload > c.max_payload then
        fail('queue "%s": payload is %d bytes, limit is %d (max_payload)', q, #payload,
             c.max_payload)
    end
    if not pcall(cjson.decode, payload) then
        fail('queue "%s": payload is not valid JSON', q)
    end
    local o = {}
    if args[2] ~= nil and args[2] ~= '' then
        local ok, v = pcall(cjson.decode, args[2])
        if not ok or type(v) ~= 'table' then
            fail('queue "%s": options must be a JSON object', q)
        end
        for k, _ in pairs(v) do
            if not OPTION_KEYS[k] then
                fail('queue "%s": unknown option "%s" (known: priority, delay_ms, ' ..
                         'max_attempts, timeout_ms, service, unique_key)', q, tostring(k))
            end
        end
        o = v
    end
    local level = default_level(c)
    if o.priority ~= nil then
        local p = o.priority
        level = nil
        if type(p) == 'number' then
            if p == math.floor(p) and p >= 0 and p < #c.priorities then
                level = p
            end
        else
            for i, name in ipairs(c.priorities) do
                if name == p then
                    level = i - 1
                end
            end
        end
        if level == nil then
            fail('queue "%s": unknown priority "%s" (known: %s, or 0-%d)', q,
                 tostring(p):sub(1, 64), table.concat(c.priorities, ', '), #c.priorities - 1)
        end
    end
    local delay = 0
    if o.delay_ms ~= nil then
        delay = int_arg(o.delay_ms, 'delay_ms', 0, 366 * 86400000)
    end
    local max_attempts = c.max_attempts
    if o.max_attempts ~= nil then
        max_attempts = int_arg(o.max_attempts, 'max_attempts', 1, 1000)
    end
    local timeout = c.timeout_ms
    if o.timeout_ms ~= nil then
        timeout = int_arg(o.timeout_ms, 'timeout_ms', 1, 86400000)
    end
    local service = c.service
    if o.service ~= nil then
        if not valid_name(o.service) then
            fail('queue "%s": bad service name "%s"', q, tostring(o.service):sub(1, 64))
        end
        service = o.service
    end
    local uk = nil
    if o.unique_key ~= nil then
        uk = o.unique_key
        if type(uk) ~= 'string' or #uk < 1 or #uk > 256 then
            fail('queue "%s": unique_key must be a string of 1 to 256 bytes', q)
        end
        local existing = redis.call('GET', K .. ':uniq:' .. uk)
        if existing and redis.call('EXISTS', job_key(K, existing)) == 1 then
            return existing
        end
    end

    local now = now_ms()
    local id = tostring(redis.call('INCR', K .. ':seq'))
    local jk = job_key(K, id)
    local state = delay > 0 and 'scheduled' or 'queued'
    redis.call('HSET', jk, 'id', id, 'queue', q, 'state', state, 'priority',
               c.priorities[level + 1], 'prio', level, 'payload', payload, 'service', service,
               'attempts', 0, 'max_attempts', max_attempts, 'run', 0, 'timeout_ms', timeout,
               'created_ms', now, 'run_at_ms', now + delay, 'queued_ms', now,
               'created_us', now_us())
    if uk then
        redis.call('HSET', jk, 'unique_key', uk)
        redis.call('SET', K .. ':uniq:' .. uk, id)
    end
    if delay > 0 then
        redis.call('ZADD', K .. ':sched', now + delay, id)
    else
        make_ready(K, id, level, false)
        wake(K, 1)
    end
    stat(K, now, 'enq')
    return id
end

-- Picks the next priority level to serve, or nil when every level is empty.
-- lens holds each level's length and is kept up to date by the caller.
local function picker(K, c)
    local n = #c.priorities
    local lens = {}
    for i = 0, n - 1 do
        lens[i] = redis.call('LLEN', K .. ':q:' .. i)
    end
    if c.order ~= 'weighted' then
        return function()
            for i = 0, n - 1 do
                if lens[i] > 0 then
                    lens[i] = lens[i] - 1
                    return i
                end
            end
            return nil
        end, function() end
    end
    -- Smooth weighted round-robin (as nginx's upstreams) over the non-empty
    -- levels: every level is served in proportion to its weight, none starves.
    local cur = {}
    local saved = redis.call('HMGET', K .. ':wrr', unpack((function()
        local f = {}
        for i = 0, n - 1 do
            f[#f + 1] = 'c' .. i
        end
        return f
    end)()))
    for i = 0, n - 1 do
        cur[i] = tonumber(saved[i + 1]) or 0
    end
    local pick = function()
        local total, best = 0, nil
        for i = 0, n - 1 do
            if lens[i] > 0 then
                local w = c.weights[i + 1] or 1
                cur[i] = cur[i] + w
                total = total + w
                if best == nil or cur[i] > cur[best] then
                    best = i
                end
            end
        end
        if best == nil then
            return nil
        end
        cur[best] = cur[best] - total
        lens[best] = lens[best] - 1
        return best
    end
    local save = function()
        local f = {}
        for i = 0, n - 1 do
            f[#f + 1] = 'c' .. i
            f[#f + 1] = cur[i]
        end
        redis.call('HSET', K .. ':wrr', unpack(f))
    end
    return pick, save
end

-- corral_reserve: KEYS[1] queue; ARGV[1] worker id; ARGV[2] how many jobs
-- (1-1000) -> a list of jobs, each a list {id, run, attempts, max_attempts,
-- timeout_ms, priority, service, payload}. Promotes due scheduled jobs first.
-- Empty while the queue is paused. Each job is leased to the worker for the
-- queue's lease time; the run token must accompany its ack/fail/defer/renew.
local function corral_reserve(keys, args)
    local K, q = queue_key(keys[1])
    local c = load_conf(K, q)
    local worker = args[1]
    if worker == nil or worker == '' or #worker > 128 then
        fail('reserve: worker id must be 1-128 bytes')
    end
    local n = int_arg(args[2] or 1, 'reserve count', 1, MAX_BATCH)
    local now = now_ms()
    promote_due(K, c, now, MAX_BATCH)
    if redis.call('EXISTS', K .. ':paused') == 1 then
        redis.call('DEL', K .. ':wake')
        return {}
    end
    local pick, save = picker(K, c)
    local start_us = now_us()
    local out = {}
    local deadline = now + c.lease_ms
    while #out < n do
        local level = pick()
        if level == nil then
            break
        end
        local id = redis.call('LPOP', K .. ':q:' .. level)
        local jk = job_key(K, id)
        local j = redis.call('HMGET', jk, 'attempts', 'max_attempts', 'run', 'timeout_ms',
                            'priority', 'service', 'payload')
        if j[1] then
            local attempts = tonumber(j[1]) + 1
            local run = tonumber(j[3]) + 1
            redis.call('HSET', jk, 'state', 'active', 'attempts', attempts, 'run', run,
                       'started_ms', now, 'started_us', start_us, 'worker', worker)
            redis.call('ZADD', K .. ':active', deadline, id)
            out[#out + 1] = {id, tostring(run), attempts, tonumber(j[2]), tonumber(j[4]), j[5],
                             j[6], j[7]}
        end
    end
    save()
    if #out < n then
        -- Nothing left: markers would only wake idle workers for nothing.
        redis.call('DEL', K .. ':wake')
    end
    return out
end

-- corral_renew: KEYS[1] queue; ARGV worker, then pairs id run ... -> a list
-- of 1 (lease extended) or 0 (lost: a newer run exists or the job ended).
-- A lease that expired and was reclaimed, but whose job has not run again,
-- is taken back by its worker.
local function corral_renew(keys, args)
    local K, q = queue_key(keys[1])
    local c = load_conf(K, q)
    local worker = args[1]
    local now = now_ms()
    local out = {}
    for i = 2, #args - 1, 2 do
        local id, run = args[i], args[i + 1]
        local jk = job_key(K, id)
        local state = current_run(jk, run)
        if state == nil then
            out[#out + 1] = 0
        else
            if state ~= 'active' then
                unlink(K, jk, id, state)
                redis.call('HSET', jk, 'state', 'active', 'worker', worker, 'lost', '0')
                redis.call('HDEL', jk, 'finished_ms')
                redis.call('DEL', K .. ':fin:' .. id)
            end
            redis.call('ZADD', K .. ':active', now + c.lease_ms, id)
            out[#out + 1] = 1
        end
    end
    return out
end

-- corral_ack: KEYS[1] queue; ARGV worker, then triples id run result ... ->
-- a list with, per job, 1 (done), 0 (stale: a newer run exists or the job
-- ended; nothing written) or 2 (result over max_result: the job is dead).
local function corral_ack(keys, args)
    local K, q = queue_key(keys[1])
    local c = load_conf(K, q)
    local now = now_ms()
    local out = {}
    for i = 2, #args - 2, 3 do
        local id, run, result = args[i], args[i + 1], args[i + 2]
        local jk = job_key(K, id)
        local state = current_run(jk, run)
        if state == nil then
            out[#out + 1] = 0
        else
            unlink(K, jk, id, state)
            local started = redis.call('HGET', jk, 'started_ms')
            if #result > c.max_result then
                to_dead(K, c, id, jk, now, string.format(
                    'result is %d bytes, limit is %d (max_result)', #result, c.max_result), false)
                stat_proc(K, now, 'fail', started)
                out[#out + 1] = 2
            else
                finish(K, c, id, jk, 'done', now, {'result', result, 'lost', '0'}, false)
                stat_proc(K, now, 'done', started)
                out[#out + 1] = 1
            end
        end
    end
    return out
end

-- corral_fail: KEYS[1] queue; ARGV worker, then quadruples id run kind error
-- ... where kind is "retry" or "permanent" -> per job "scheduled" (retry
-- after back-off), "dead" (permanent, or attempts used up) or "stale".
local function corral_fail(keys, args)
    local K, q = queue_key(keys[1])
    local c = load_conf(K, q)
    -- Seed once per call: jobs failing in one batch must get different delays.
    local t = redis.call('TIME')
    math.randomseed(tonumber(t[2]) * 1000 + tonumber(t[1]) % 1000)
    local now = now_ms()
    local out = {}
    for i = 2, #args - 3, 4 do
        local id, run, kind, err = args[i], args[i + 1], args[i + 2], args[i + 3]
        if kind ~= 'retry' and kind ~= 'permanent' then
            fail('fail: kind must be retry or permanent, got "%s"', tostring(kind):sub(1, 32))
        end
        if #err > 4096 then
            err = err:sub(1, 4096)
        end
        local jk = job_key(K, id)
        local state = current_run(jk, run)
        if state == nil then
            out[#out + 1] = 'stale'
        else
            unlink(K, jk, id, state)
            local j = redis.call('HMGET', jk, 'attempts', 'max_attempts', 'started_ms')
            local attempts, max = tonumber(j[1]), tonumber(j[2])
            stat_proc(K, now, 'fail', j[3])
            if kind == 'permanent' or attempts >= max then
                if kind == 'retry' then
                    err = string.format('%s (attempt %d of %d)', err, attempts, max)
                end
                to_dead(K, c, id, jk, now, err, false)
                out[#out + 1] = 'dead'
            else
                local at = now + backoff_ms(c, attempts)
                redis.call('HSET', jk, 'state', 'scheduled', 'error', err, 'run_at_ms', at)
                redis.call('ZADD', K .. ':sched', at, id)
                stat(K, now, 'retry')
                out[#out + 1] = 'scheduled'
            end
        end
    end
    return out
end

-- corral_defer: KEYS[1] queue; ARGV worker, then triples id run delay_ms ...,
-- then nothing else -> per job "scheduled" or "stale". For breakers and
-- throttles: the job runs again after delay_ms and the attempt is refunded.
local function corral_defer(keys, args)
    local K, q = queue_key(keys[1])
    load_conf(K, q)
    local now = now_ms()
    local out = {}
    for i = 2, #args - 2, 3 do
        local id, run = args[i], args[i + 1]
        local delay = int_arg(args[i + 2], 'delay_ms', 0, 366 * 86400000)
        local jk = job_key(K, id)
        local state = current_run(jk, run)
        if state == nil then
            out[#out + 1] = 'stale'
        else
            unlink(K, jk, id, state)
            local attempts = tonumber(redis.call('HGET', jk, 'attempts'))
            redis.call('HSET', jk, 'state', 'scheduled', 'attempts', math.max(attempts - 1, 0),
                       'run_at_ms', now + delay)
            redis.call('HINCRBY', jk, 'deferrals', 1)
            redis.call('ZADD', K .. ':sched', now + delay, id)
            stat(K, now, 'defer')
            out[#out + 1] = 'scheduled'
        end
    end
    return out
end

-- corral_promote: KEYS[1] queue; ARGV[1] optional limit (default 1000) ->
-- how many due scheduled jobs were made ready (idle workers are woken).
local function corral_promote(keys, args)
    local K, q = queue_key(keys[1])
    local c = load_conf(K, q)
    return promote_due(K, c, now_ms(), int_arg(args[1] or MAX_BATCH, 'limit', 1, 100000))
end

-- Requeues (at the front of its level) or, with attempts used up, kills a job
-- whose lease is gone. The run token is kept, so the old run may still report.
local function reclaim_one(K, c, id, now, why)
    local jk = job_key(K, id)
    redis.call('ZREM', K .. ':active', id)
    local j = redis.call('HMGET', jk, 'attempts', 'max_attempts', 'worker', 'state')
    if not j[1] or j[4] ~= 'active' then
        return 0
    end
    local attempts, max = tonumber(j[1]), tonumber(j[2])
    local err = string.format('%s (worker %s, attempt %d of %d)', why, j[3] or '?', attempts, max)
    stat(K, now, 'lost')
    if attempts >= max then
        to_dead(K, c, id, jk, now, err, true)
    else
        redis.call('HSET', jk, 'state', 'queued', 'error', err, 'queued_ms', now)
        make_ready(K, id, level_of(c, jk), true)
    end
    return 1
end

-- corral_reclaim: KEYS[1] queue; ARGV[1] optional limit -> how many expired
-- leases were reclaimed. Safe to run from every host at once.
local function corral_reclaim(keys, args)
    local K, q = queue_key(keys[1])
    local c = load_conf(K, q)
    local now = now_ms()
    local limit = int_arg(args[1] or MAX_BATCH, 'limit', 1, 100000)
    local ids = redis.call('ZRANGEBYSCORE', K .. ':active', '-inf', now, 'LIMIT', 0, limit)
    local n = 0
    for _, id in ipairs(ids) do
        n = n + reclaim_one(K, c, id, now, 'lease expired')
    end
    wake(K, n)
    return n
end

-- corral_reclaim_worker: KEYS[1] queue; ARGV[1] worker id, or a prefix
-- ending in "*" (all workers of a host) -> how many of its leases were
-- reclaimed. corrald calls this the moment a worker dies.
local function corral_reclaim_worker(keys, args)
    local K, q = queue_key(keys[1])
    local c = load_conf(K, q)
    local who = args[1]
    if who == nil or who == '' or who == '*' then
        fail('reclaim_worker: a worker id or host prefix is required')
    end
    local prefix = who:sub(-1) == '*' and who:sub(1, -2) or nil
    local now = now_ms()
    local n = 0
    for _, id in ipairs(redis.call('ZRANGE', K .. ':active', 0, -1)) do
        local w = redis.call('HGET', job_key(K, id), 'worker') or ''
        if w == who or (prefix and w:sub(1, #prefix) == prefix) then
            n = n + reclaim_one(K, c, id, now, 'worker died')
        end
    end
    wake(K, n)
    return n
end

-- corral_dead_retry: KEYS[1] queue; ARGV job ids, or the single argument
-- "--all" -> how many dead jobs were queued again with their attempts reset.
local function corral_dead_retry(keys, args)
    local K, q = queue_key(keys[1])
    local c = load_conf(K, q)
    local ids = args
    if args[1] == '--all' then
        ids = redis.call('LRANGE', K .. ':dead', 0, -1)
    end
    local now = now_ms()
    local n = 0
    for _, id in ipairs(ids) do
        local jk = job_key(K, id)
        local j = redis.call('HMGET', jk, 'state')
        if j[1] == 'dead' then
            redis.call('LREM', K .. ':dead', 1, id)
            redis.call('HSET', jk, 'state', 'queued', 'attempts', 0, 'queued_ms', now, 'lost', '0')
            redis.call('HDEL', jk, 'finished_ms')
            redis.call('DEL', K .. ':fin:' .. id)
            make_ready(K, id, level_of(c, jk), false)
            n = n + 1
        elseif args[1] ~= '--all' then
            fail('queue "%s": job %s is not dead (%s)', q, tostring(id):sub(1, 40),
                 j[1] and ('state ' .. j[1]) or 'no such job')
        end
    end
    wake(K, n)
    return n
end

-- corral_dead_purge: KEYS[1] queue -> how many dead jobs were deleted.
local function corral_dead_purge(keys, args)
    local K, q = queue_key(keys[1])
    load_conf(K, q)
    local ids = redis.call('LRANGE', K .. ':dead', 0, -1)
    for _, id in ipairs(ids) do
        local jk = job_key(K, id)
        local uk = redis.call('HGET', jk, 'unique_key')
        if uk then
            redis.call('DEL', K .. ':uniq:' .. uk)
        end
        redis.call('DEL', jk, K .. ':fin:' .. id)
    end
    redis.call('DEL', K .. ':dead')
    return #ids
end

-- corral_pause / corral_resume: KEYS[1] queue -> "OK". While paused, reserve
-- hands out nothing; enqueue, retries and promotion go on.
local function corral_pause(keys, args)
    local K, q = queue_key(keys[1])
    load_conf(K, q)
    redis.call('SET', K .. ':paused', now_ms())
    return 'OK'
end

local function corral_resume(keys, args)
    local K, q = queue_key(keys[1])
    local c = load_conf(K, q)
    redis.call('DEL', K .. ':paused')
    local n = 0
    for i = 0, #c.priorities - 1 do
        n = n + redis.call('LLEN', K .. ':q:' .. i)
    end
    if n > 0 then
        wake(K, n)
    end
    return 'OK'
end

-- corral_cancel: KEYS[1] queue; ARGV[1] job id -> "cancelled". Only a job
-- that is queued, scheduled or dead can be cancelled; a running one cannot.
local function corral_cancel(keys, args)
    local K, q = queue_key(keys[1])
    local c = load_conf(K, q)
    local id = args[1] or ''
    local jk = job_key(K, id)
    local state = redis.call('HGET', jk, 'state')
    if not state then
        fail('queue "%s": no job %s', q, id:sub(1, 40))
    end
    if state ~= 'queued' and state ~= 'scheduled' and state ~= 'dead' then
        fail('queue "%s": job %s is %s and cannot be cancelled', q, id:sub(1, 40), state)
    end
    unlink(K, jk, id, state)
    local uk = redis.call('HGET', jk, 'unique_key')
    if uk then
        redis.call('DEL', K .. ':uniq:' .. uk)
    end
    finish(K, c, id, jk, 'cancelled', now_ms(), {}, false)
    return 'cancelled'
end

local NUMERIC = {attempts = true, max_attempts = true, timeout_ms = true, created_ms = true,
                 run_at_ms = true, queued_ms = true, started_ms = true, finished_ms = true,
                 deferrals = true, prio = true, run = true}
-- created_us and started_us stay strings: cjson prints numbers with 14
-- significant digits, too few for microseconds since 1970.

-- corral_job: KEYS[1] queue; ARGV[1] job id -> the job as a JSON object, or
-- nil when there is no such job (never existed, or its result expired).
local function corral_job(keys, args)
    local K, q = queue_key(keys[1])
    local h = redis.call('HGETALL', job_key(K, args[1] or ''))
    if #h == 0 then
        load_conf(K, q) -- an unknown queue is an error, an unknown id is nil
        return nil
    end
    local j = {}
    for i = 1, #h, 2 do
        local k, v = h[i], h[i + 1]
        if NUMERIC[k] then
            j[k] = tonumber(v)
        elseif k ~= 'lost' then
            j[k] = v
        end
    end
    return cjson.encode(j)
end

-- corral_stats: KEYS[1] queue; ARGV[1] optional window in seconds (default
-- 60, whole minutes) -> a JSON object: name, paused, depth,
-- depth_by_priority, inflight, scheduled, dead, enqueued_per_s, done_per_s,
-- failed_per_s, proc_ms_p50/p95/p99/mean, oldest_wait_ms, window_s.
local function corral_stats(keys, args)
    local K, q = queue_key(keys[1])
    local c = load_conf(K, q)
    local window_s = int_arg(args[1] or 60, 'window', 60, 3600)
    local minutes = math.ceil(window_s / 60)
    local now = now_ms()
    local by, depth, oldest = {}, 0, nil
    for i, name in ipairs(c.priorities) do
        local lk = K .. ':q:' .. (i - 1)
        local n = redis.call('LLEN', lk)
        by[name] = n
        depth = depth + n
        if n > 0 then
            local head = redis.call('LINDEX', lk, 0)
            local t = tonumber(redis.call('HGET', job_key(K, head), 'queued_ms'))
            if t and (oldest == nil or t < oldest) then
                oldest = t
            end
        end
    end
    local m = math.floor(now / 60000)
    local sums = {enq = 0, done = 0, fail = 0, dead = 0, retry = 0, defer = 0, lost = 0,
                  ps = 0, pn = 0}
    local hist = {}
    for b = 0, #HIST do
        hist[b] = 0
    end
    for k = m - minutes, m do
        local h = redis.call('HGETALL', K .. ':st:' .. k)
        for i = 1, #h, 2 do
            local f, v = h[i], tonumber(h[i + 1])
            if sums[f] ~= nil then
                sums[f] = sums[f] + v
            elseif f:sub(1, 1) == 'h' then
                local b = tonumber(f:sub(2))
                hist[b] = (hist[b] or 0) + v
            end
        end
    end
    local span_s = (now - (m - minutes) * 60000) / 1000
    local function pct(p)
        if sums.pn == 0 then
            return 0
        end
        local want, acc = p * sums.pn, 0
        for b = 0, #HIST do
            local cnt = hist[b]
            if cnt > 0 and acc + cnt >= want then
                local lo = b == 0 and 0 or HIST[b]
                local hi = HIST[b + 1] or lo
                return math.floor(lo + (hi - lo) * (want - acc) / cnt + 0.5)
            end
            acc = acc + cnt
        end
        return HIST[#HIST]
    end
    local function rate(n)
        return math.floor(n / span_s * 1000 + 0.5) / 1000
    end
    local paused = redis.call('EXISTS', K .. ':paused') == 1
    return cjson.encode({
        name = q, paused = paused, depth = depth, depth_by_priority = by,
        inflight = redis.call('ZCARD', K .. ':active'),
        scheduled = redis.call('ZCARD', K .. ':sched'),
        dead = redis.call('LLEN', K .. ':dead'),
        enqueued_per_s = rate(sums.enq), done_per_s = rate(sums.done),
        failed_per_s = rate(sums.fail), retried = sums.retry, deferred = sums.defer,
        lost = sums.lost, died = sums.dead,
        proc_ms_p50 = pct(0.50), proc_ms_p95 = pct(0.95), proc_ms_p99 = pct(0.99),
        proc_ms_mean = sums.pn > 0 and math.floor(sums.ps / sums.pn + 0.5) or 0,
        oldest_wait_ms = oldest and (now - oldest) or 0, window_s = window_s,
        service = c.service, time_ms = now
    })
end

local RO = {'no-writes'}
redis.register_function{function_name = 'corral_version', callback = api(corral_version), flags = RO}
redis.register_function('corral_declare', api(corral_declare))
redis.register_function('corral_enqueue', api(corral_enqueue))
redis.register_function('corral_reserve', api(corral_reserve))
redis.register_function('corral_renew', api(corral_renew))
redis.register_function('corral_ack', api(corral_ack))
redis.register_function('corral_fail', api(corral_fail))
redis.register_function('corral_defer', api(corral_defer))
redis.register_function('corral_promote', api(corral_promote))
redis.register_function('corral_reclaim', api(corral_reclaim))
redis.register_function('corral_reclaim_worker', api(corral_reclaim_worker))
redis.register_function('corral_dead_retry', api(corral_dead_retry))
redis.register_function('corral_dead_purge', api(corral_dead_purge))
redis.register_function('corral_pause', api(corral_pause))
redis.register_function('corral_resume', api(corral_resume))
redis.register_function('corral_cancel', api(corral_cancel))
redis.register_function{function_name = 'corral_job', callback = api(corral_job), flags = RO}
redis.register_function{function_name = 'corral_stats', callback = api(corral_stats), flags = RO}
