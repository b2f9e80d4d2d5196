-- enqueue.lua: putting jobs on a queue: corral_enqueue (one job) and
-- corral_enqueue_many (up to 1,000 in one call, all or nothing), sharing
-- the checks of the options and payloads and the writes of a job. Keys:
-- those of jobs.lua's header, derived from K = "<prefix>:{<queue>}"
-- (KEYS[1]): K:conf, K:seq, K:job:<id>, K:q:<level>, K:sched, K:uniq:<key>,
-- K:wake, K:paused, K:st:<minute> (stats.lua), and with the option tenant
-- its list and turn (tenants.lua).

local OPTION_KEYS = {priority = true, delay_ms = true, max_attempts = true, timeout_ms = true,
                     service = true, unique_key = true, tenant = true,
                     tokens = true, deadline_ms = true}

-- Checks one payload against the queue's max_payload and for JSON; what
-- names it in a refusal: "payload", or "payload 3 of 4" in a batch.
local function check_payload(c, q, payload, what)
    if #payload > c.max_payload then
        fail('TOOBIG', 'queue "%s": %s is %d bytes, limit is %d (max_payload)', q, what,
             #payload, c.max_payload)
    end
    -- cjson stops at a NUL byte: what follows it would go unchecked.
    if payload:find('\0', 1, true) or not pcall(json_decode, payload) then
        fail('BADPAYLOAD', 'queue "%s": %s is not valid JSON', q, what)
    end
end

-- Checks an enqueue's options object (JSON text, or nil or '' for none)
-- against the queue's settings -> {level, delay, max_attempts, timeout,
-- service, uk, tenant}. Shared by corral_enqueue and corral_enqueue_many, so one
-- payload or a thousand are refused with the same words.
local function enqueue_options(c, q, text)
    if (text == nil or text == '') and c.opt0 then
        return c.opt0 -- no options: the queue's defaults, made once per settings (read only)
    end
    local ft = text and tfn.tenant_option(text) -- tenants.lua: a checked tenant, no decoding
    if ft and c.optt then
        -- The tenant alone (a tenant's every job): the options made from
        -- the settings for the first such call, with this call's tenant,
        -- without the checks of options it does not have.
        c.optt.tenant = ft
        return c.optt
    end
    local o = ft and {tenant = ft} or {}
    if not ft and text ~= nil and text ~= '' then
        local ok, v = pcall(json_decode, text)
        if not ok or type(v) ~= 'table' then
            fail('BADOPTION', 'queue "%s": options must be a JSON object', q)
        end
        for k, _ in pairs(v) do
            if not OPTION_KEYS[k] then
                fail('BADOPTION', 'queue "%s": unknown option "%s" (known: priority, delay_ms, ' ..
                         'max_attempts, timeout_ms, service, unique_key, tenant, tokens, ' ..
                         'deadline_ms)', q, tostring(k))
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
            fail('BADOPTION', 'queue "%s": unknown priority "%s" (known: %s, or 0-%d)', q,
                 shown(p):sub(1, 64), table.concat(c.priorities, ', '), #c.priorities - 1)
        end
    end
    local r = {level = level, delay = 0, max_attempts = c.max_attempts, timeout = c.timeout_ms,
               service = c.gated or c.service}
    if o.delay_ms ~= nil then
        r.delay = int_arg('BADOPTION', o.delay_ms, 'delay_ms', 0, 366 * 86400000)
    end
    if o.max_attempts ~= nil then
        r.max_attempts = int_arg('BADOPTION', o.max_attempts, 'max_attempts', 1, 1000)
    end
    if o.timeout_ms ~= nil then
        r.timeout = int_arg('BADOPTION', o.timeout_ms, 'timeout_ms', 1, 86400000)
    end
    if o.service ~= nil then
        if not valid_name(o.service) then
            fail('BADOPTION', 'queue "%s": bad service name "%s"', q, shown(o.service):sub(1, 64))
        end
        r.service = o.service
    end
    if o.unique_key ~= nil then
        local uk = o.unique_key
        if type(uk) ~= 'string' or #uk < 1 or #uk > 256 then
            fail('BADOPTION', 'queue "%s": unique_key must be a string of 1 to 256 bytes', q)
        end
        r.uk = uk
    end
    if o.tenant ~= nil then
        if o.tenant ~= ft and not valid_tenant(o.tenant) then
            fail('BADTENANT', 'queue "%s": bad tenant "%s": use 1-64 bytes of A-Z a-z 0-9 _ . : @ -',
                 q, shown(o.tenant):sub(1, 80))
        end
        r.tenant = o.tenant
    end
    if o.tokens ~= nil then -- tokens.lua: the job's token estimate
        r.tokens = tok_option(q, o.tokens)
    end
    if o.deadline_ms ~= nil then -- control.lua
        r.deadline = deadline_option(q, o.deadline_ms)
    end
    if text == nil or text == '' then
        c.opt0 = r -- derived from the settings alone (load_conf's table)
    elseif ft then
        c.optt = r -- the settings and a tenant, changed by the next such call
    end
    return r
end

-- With a unique key in o: the id of the job that holds it while its record
-- exists, else nil.
local function enqueue_existing(K, o)
    if o.uk then
        local existing = rcall('GET', K .. ':uniq:' .. o.uk)
        if existing and rcall('EXISTS', job_key(K, existing)) == 1 then
            return existing
        end
    end
    return nil
end

-- Writes new jobs for args[from..to] (checked payloads) with checked
-- options o -> their ids, in order, and whether they are ready now (not
-- scheduled). An INCR and an HSET per job (INCR, not one INCRBY: the ACL
-- line of docs/operations.md names every command the library runs), and
-- one RPUSH (or ZADD) makes them all ready (or scheduled) in order. The
-- caller wakes workers and counts the jobs.
local function enqueue_write(K, c, q, o, args, from, to, now, now_micros, now_t, tenanted)
    local n = to - from + 1
    local ready = o.delay == 0
    -- The record's fields, the same for every job of the call but id (2)
    -- and payload (8); numbers as text (prelude: itxt).
    local f = {'id', '', 'queue', q, 'state', ready and 'queued' or 'scheduled', 'payload', '',
               'priority', c.priorities[o.level + 1], 'prio', itxt(o.level), 'service', o.service,
               'attempts', '0', 'max_attempts', itxt(o.max_attempts), 'run', '0', 'timeout_ms',
               o.timeout == c.timeout_ms and c.timeout_t or itxt(o.timeout), 'created_ms', now_t,
               'run_at_ms', ready and now_t or itxt(now + o.delay), 'queued_ms', now_t,
               'created_us', now_micros, 'tenant', o.tenant}
    -- tenants.lua: the tenant's pair is in the constructor (a table grown
    -- past it is rehashed: docs/benchmarks.md, "Tenants"), dropped if none.
    if not o.tenant then
        f[#f] = nil
    end
    if o.tokens then -- tokens.lua reads it at reserve
        f[#f + 1] = 'tokens'
        f[#f + 1] = o.tokens
    end
    if o.deadline then -- control.lua: the deadline, on the server clock
        f[#f + 1], f[#f + 2] = 'deadline_at_ms', now + o.deadline
    end
    local ids, sched = {}, not ready and {}
    for i = 0, n - 1 do
        -- as text: string.format's %d costs about half of tostring's %.14g
        local id = string.format('%d', rcall('INCR', c.seq))
        f[2], f[8] = id, args[from + i]
        rcall('HSET', job_key(K, id), unpack(f))
        ids[i + 1] = id
        if sched then
            sched[2 * i + 1], sched[2 * i + 2] = now + o.delay, id
        end
    end
    if o.uk then -- one job (a unique key never makes two)
        rcall('HSET', job_key(K, ids[1]), 'unique_key', o.uk)
        rcall('SET', K .. ':uniq:' .. o.uk, ids[1])
    end
    if o.tenant and not tenanted then
        rcall('HSET', K .. ':conf', 'tenanted', 1) -- tenants.lua: from now on
    end
    if ready and o.tenant then
        tenant_ready(K, o.level, o.tenant, ids, false, c) -- tenants.lua
    elseif ready then
        -- make_ready, n at once; a level's first default jobs join its turn
        if rcall('RPUSH', c.qkeys[o.level + 1], unpack(ids)) == n and tenanted then
            tenant_default_joined(K, o.level)
        end
    else
        rcall('ZADD', K .. ':sched', unpack(sched))
        sched_due(K, false, now + o.delay)
    end
    return ids, ready
end

-- corral_enqueue: KEYS[1] queue; ARGV[1] payload (JSON text); ARGV[2]
-- optional options JSON {priority (name or index), delay_ms, max_attempts,
-- timeout_ms, service, unique_key, tenant, tokens, deadline_ms} -> the job id
-- (string). With unique_key, a
-- job whose record still exists with that key is returned instead.
local function corral_enqueue(keys, args)
    local K, q = queue_key(keys[1])
    local c, tenanted, paused = load_conf(K, q, 1)
    local payload = args[1]
    if payload == nil then
        fail('BADPAYLOAD', 'queue "%s": missing payload', q)
    end
    check_payload(c, q, payload, 'payload')
    if #args > 2 then
        fail('BADARG', 'queue "%s": corral_enqueue takes a payload and one options object, got %d ' ..
                 'arguments', q, #args)
    end
    local o = enqueue_options(c, q, args[2])
    local existing = enqueue_existing(K, o)
    if existing then
        return existing
    end

    local now, now_u, now_t = clock()
    local ids, ready = enqueue_write(K, c, q, o, args, 1, 1, now, now_u, now_t, tenanted)
    if ready then
        wake(K, 1, paused)
    end
    stat(K, now, 'enq')
    return ids[1]
end

local MAX_ENQUEUE_MANY = 1000 -- most payloads one corral_enqueue_many takes

-- corral_enqueue_many: KEYS[1] queue; ARGV[1] options JSON (as
-- corral_enqueue's ARGV[2], or '' for none), applied to every job; ARGV[2..]
-- 1 to 1,000 payloads (JSON text) -> the job ids (strings), in the order of
-- the payloads. All or nothing: the options and every payload are checked
-- before anything is written, and a refused call names the first bad
-- payload by its position (1-based: "payload 3 of 4") and writes nothing.
-- With unique_key, the first payload makes the job (or finds the one that
-- exists) and every later one answers its id, as corral_enqueue called once
-- per payload would.
local function corral_enqueue_many(keys, args)
    local K, q = queue_key(keys[1])
    local c, tenanted, paused = load_conf(K, q, 1)
    local n = #args - 1
    if n < 1 then
        fail('BADPAYLOAD', 'queue "%s": missing payload', q)
    end
    if n > MAX_ENQUEUE_MANY then
        fail('BADARG', 'queue "%s": corral_enqueue_many takes at most %d payloads, got %d', q,
             MAX_ENQUEUE_MANY, n)
    end
    for i = 2, #args do
        check_payload(c, q, args[i], string.format('payload %d of %d', i - 1, n))
    end
    local o = enqueue_options(c, q, args[1])

    local existing = enqueue_existing(K, o)
    local now, now_u, now_t = clock()
    local ids, ready = nil, false
    if existing then
        ids = {existing}
    else
        -- with a unique key, one job: the first payload's
        ids, ready = enqueue_write(K, c, q, o, args, 2, o.uk and 2 or #args, now, now_u,
                                   now_t, tenanted)
        if ready then
            wake(K, #ids, paused)
        end
        stat(K, now, 'enq', #ids)
    end
    for i = #ids + 1, n do -- every later payload of a unique key answers its job
        ids[i] = ids[1]
    end
    return ids
end
