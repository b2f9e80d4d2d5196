-- corral_enqueue_many (issue 15, item 1): bulk enqueue, for the corral
-- Function library. Not a library of its own: it uses queue/corral.lua's
-- helpers (fail, api, queue_key, load_conf, json_decode, int_arg, shown,
-- valid_name, default_level, job_key, make_ready, wake, stat, now_ms,
-- now_us, MAX_BATCH, OPTION_KEYS) and goes into the jobs module beside
-- corral_enqueue. Until then the client tests load it appended to
-- queue/corral.lua (tests/integration/test_client_python.py,
-- clients/node/test/helpers.js), which is why it ends with its own
-- register_function line.
--
-- enqueue_options and enqueue_write are corral_enqueue's option checks and
-- writes, cut out so that one payload or a thousand go through the same
-- code; corral_enqueue can call them too (same messages, same order).

-- Checks an options object (JSON text, or '' for none) against the queue's
-- settings. Returns {level, delay, max_attempts, timeout, service, uk}.
local function enqueue_options(c, q, text)
    local o = {}
    if text ~= nil and text ~= '' then
        local ok, v = pcall(json_decode, text)
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
                 shown(p):sub(1, 64), table.concat(c.priorities, ', '), #c.priorities - 1)
        end
    end
    local r = {level = level, delay = 0, max_attempts = c.max_attempts, timeout = c.timeout_ms,
               service = c.service}
    if o.delay_ms ~= nil then
        r.delay = int_arg(o.delay_ms, 'delay_ms', 0, 366 * 86400000)
    end
    if o.max_attempts ~= nil then
        r.max_attempts = int_arg(o.max_attempts, 'max_attempts', 1, 1000)
    end
    if o.timeout_ms ~= nil then
        r.timeout = int_arg(o.timeout_ms, 'timeout_ms', 1, 86400000)
    end
    if o.service ~= nil then
        if not valid_name(o.service) then
            fail('queue "%s": bad service name "%s"', q, shown(o.service):sub(1, 64))
        end
        r.service = o.service
    end
    if o.unique_key ~= nil then
        local uk = o.unique_key
        if type(uk) ~= 'string' or #uk < 1 or #uk > 256 then
            fail('queue "%s": unique_key must be a string of 1 to 256 bytes', q)
        end
        r.uk = uk
    end
    return r
end

-- Writes one checked job; returns its id and whether it is ready now (false
-- when scheduled, or when unique_key found an existing job: then that id).
local function enqueue_write(K, c, q, payload, o, now, now_micros)
    if o.uk then
        local existing = redis.call('GET', K .. ':uniq:' .. o.uk)
        if existing and redis.call('EXISTS', job_key(K, existing)) == 1 then
            return existing, false, false
        end
    end
    local id = tostring(redis.call('INCR', K .. ':seq'))
    local jk = job_key(K, id)
    local state = o.delay > 0 and 'scheduled' or 'queued'
    redis.call('HSET', jk, 'id', id, 'queue', q, 'state', state, 'priority',
               c.priorities[o.level + 1], 'prio', o.level, 'payload', payload, 'service',
               o.service, 'attempts', 0, 'max_attempts', o.max_attempts, 'run', 0, 'timeout_ms',
               o.timeout, 'created_ms', now, 'run_at_ms', now + o.delay, 'queued_ms', now,
               'created_us', now_micros)
    if o.uk then
        redis.call('HSET', jk, 'unique_key', o.uk)
        redis.call('SET', K .. ':uniq:' .. o.uk, id)
    end
    if o.delay > 0 then
        redis.call('ZADD', K .. ':sched', now + o.delay, id)
        return id, false, true
    end
    make_ready(K, id, o.level, false)
    return id, true, true
end

-- corral_enqueue_many: KEYS[1] queue; ARGV[1] options JSON (as
-- corral_enqueue's, or '' for none), applied to every job; ARGV[2..] 1 to
-- MAX_BATCH payloads (JSON text) -> the job ids (strings), in the order of
-- the payloads. All or nothing: the options and every payload are checked
-- before anything is written, and a refusal names the first bad payload by
-- its position (1-based) in the call. With unique_key, the first payload
-- makes the job (or finds the one that exists) and every later one
-- answers its id, as corral_enqueue called once per payload would.
local function corral_enqueue_many(keys, args)
    local K, q = queue_key(keys[1])
    local c = load_conf(K, q)
    local n = #args - 1
    if n < 1 then
        fail('queue "%s": missing payload', q)
    end
    if n > MAX_BATCH then
        fail('queue "%s": corral_enqueue_many takes at most %d payloads, got %d', q, MAX_BATCH,
             n)
    end
    for i = 2, #args do
        local payload = args[i]
        if #payload > c.max_payload then
            fail('queue "%s": payload %d of %d is %d bytes, limit is %d (max_payload)', q, i - 1,
                 n, #payload, c.max_payload)
        end
        -- cjson stops at a NUL byte: what follows it would go unchecked.
        if payload:find('\0', 1, true) or not pcall(json_decode, payload) then
            fail('queue "%s": payload %d of %d is not valid JSON', q, i - 1, n)
        end
    end
    local o = enqueue_options(c, q, args[1])

    local now, now_micros = now_ms(), now_us()
    local ids, ready, made = {}, 0, 0
    for i = 2, #args do
        local id, is_ready, is_new = enqueue_write(K, c, q, args[i], o, now, now_micros)
        ids[i - 1] = id
        if is_ready then
            ready = ready + 1
        end
        if is_new then
            made = made + 1
        end
    end
    wake(K, ready)
    if made > 0 then
        stat(K, now, 'enq', made)
    end
    return ids
end

redis.register_function('corral_enqueue_many', api(corral_enqueue_many))
