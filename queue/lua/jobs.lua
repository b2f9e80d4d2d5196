-- jobs.lua: a queue and its jobs: declare, reserve (enqueue: enqueue.lua),
-- promote, pause, resume, read, and the dead list (cancel: control.lua). Keys of a queue, all
-- derived from K = "<prefix>:{<queue>}" (KEYS[1]) and sharing the hash tag
-- {<queue>}, so one queue lives in one Redis Cluster slot (docs/protocol.md
-- lists them too):
--   K:conf            hash   queue settings, written by corral_declare, and
--                            all of them as one text, packed (load_conf's cache);
--                            paused ("1"/"0", as K:paused) and due (promote_due)
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
--   K:st:<minute>     hash   statistics (stats.lua)
--   K:t*              the tenants' turns and lists (tenants.lua)
-- Derived from K's prefix, outside the queue's slot: <prefix>:queues, the
-- set of declared queue names (corral_declare alone), and the keys of the
-- queue's service (reserve: services.lua).

-- Markers are pushed without reading the list's length first (RPUSH
-- answers it): a list grown past WAKE_MAX, which only happens while nobody
-- takes markers (workers busy, jobs waiting), is cut back to WAKE_KEEP at
-- once, so it holds at most WAKE_MAX + 64 and the trim comes once per
-- WAKE_MAX - WAKE_KEEP markers, not on every call.
local WAKE_MAX, WAKE_KEEP = 1024, 512
local MARKS = {}
for i = 1, 64 do
    MARKS[i] = '1'
end

-- Reserve's deadline check (lease_one), defined in control.lua, which
-- comes after this module because it needs to_dead.
local deadline_lease

-- Pushes up to n markers for idle workers, unless the queue is paused
-- (paused queues hand out nothing, so waking anyone would be for nothing).
-- paused: load_conf's answer, or nil (not known: K:paused is looked at).
local function wake(K, n, paused)
    if n <= 0 or paused or (paused == nil and rcall('EXISTS', K .. ':paused') == 1) then
        return
    end
    local wk = K .. ':wake'
    local len = rcall('RPUSH', wk, unpack(MARKS, 1, n < 64 and n or 64))
    if len > WAKE_MAX then
        rcall('LPOP', wk, itxt(len - WAKE_KEEP))
    end
end

-- A job's priority level, clamped to the queue's current levels (a
-- redeclare may have removed the job's level while it was scheduled or
-- dead), and its tenant ("" for none).
local function level_of(c, jk)
    local j = rcall('HMGET', jk, 'prio', 'tenant')
    local level = tonumber(j[1]) or default_level(c)
    if level > #c.priorities - 1 then
        level = #c.priorities - 1
        rcall('HSET', jk, 'prio', level, 'priority', c.priorities[level + 1])
    end
    return level, j[2] or ''
end

-- Makes the job at jk ready at its level, at the back or (front) at the
-- front, in its tenant's list (tenants.lua).
local function make_ready(K, c, id, jk, front)
    local level, t = level_of(c, jk)
    tenant_ready(K, level, t, {id}, front, c)
end

-- Moves a job to a final state and publishes it to awaiters. uk: the
-- job's unique_key when the caller has read it (false: it has none; nil:
-- read it here). A job leaving its lease (from_active) has no K:fin:<id>
-- list yet (corral_dead_retry deletes it when a dead job runs again), so
-- only the other moves delete one first. now: the clock in ms, a number or
-- its text (prelude: itxt). f, v: one more field and its value to write
-- (nil for none), as arguments rather than a table made per call.
local function finish(K, c, id, jk, state, now, f, v, keep, uk, from_active)
    if f then
        rcall('HSET', jk, 'state', state, 'finished_ms', now, f, v)
    else
        rcall('HSET', jk, 'state', state, 'finished_ms', now)
    end
    local fk = K .. ':fin:' .. id
    if not from_active then
        rcall('DEL', fk)
    end
    rcall('RPUSH', fk, state)
    if not keep then
        local ttl = c.result_ttl_t
        rcall('PEXPIRE', jk, ttl)
        rcall('PEXPIRE', fk, ttl)
        if uk == nil then
            uk = rcall('HGET', jk, 'unique_key')
        end
        if uk then
            rcall('PEXPIRE', K .. ':uniq:' .. uk, ttl)
        end
    end
end

local function to_dead(K, c, id, jk, now, err)
    rcall('LPUSH', K .. ':dead', id)
    finish(K, c, id, jk, 'dead', now, 'error', err, true)
    stat(K, now, 'dead')
end

-- Removes a job id from whichever container its state says it is in.
local function unlink(K, jk, id, state)
    if state == 'queued' then
        tenant_unlink(K, jk, id)
    elseif state == 'scheduled' then
        rcall('ZREM', K .. ':sched', id)
    elseif state == 'active' then
        rcall('ZREM', K .. ':active', id)
    elseif state == 'dead' then
        rcall('LREM', K .. ':dead', 1, id)
    end
end

-- K:conf's "due": no job of K:sched is due before it (a lower bound of its
-- earliest score; 9e15 while it is empty), so a reserve looks at K:sched
-- only from then on rather than on every call. Absent (queues of library
-- version 6 and before, or after corral_breaker_reset moved a job) means
-- not known: the next promote_due looks. Whoever adds a job to K:sched
-- lowers it (sched_due); removing one leaves it low, which only costs a look.

-- Lowers K:conf's due to at when it is later; returns the new due. due:
-- what the call knows (false: not read yet; then read here), or the last
-- answer of sched_due.
local function sched_due(K, due, at)
    if due == false then
        due = tonumber(rcall('HGET', K .. ':conf', 'due'))
    end
    if due and at < due then
        rcall('HSET', K .. ':conf', 'due', itxt(at))
        return at
    end
    return due
end

-- Makes up to limit due jobs of K:sched ready. due, paused: load_conf's
-- answers (nil: not known).
local function promote_due(K, c, now, limit, now_t, due, paused)
    if due and now < due then
        return 0 -- nothing in K:sched is due yet
    end
    local ids = rcall('ZRANGEBYSCORE', c.sched, '-inf', now_t or itxt(now), 'LIMIT', '0',
                      itxt(limit))
    if #ids > 0 then
        rcall('ZREM', K .. ':sched', unpack(ids))
    end
    if #ids < limit then -- every due job taken: the earliest left is the next due
        local first = rcall('ZRANGE', c.sched, 0, 0, 'WITHSCORES')
        rcall('HSET', K .. ':conf', 'due', first[2] or '9000000000000000') -- none
    end
    if #ids == 0 then
        return 0
    end
    for _, id in ipairs(ids) do
        local jk = job_key(K, id)
        if rcall('EXISTS', jk) == 1 then
            rcall('HSET', jk, 'state', 'queued', 'queued_ms', now_t or itxt(now))
            make_ready(K, c, id, jk, false)
        end
    end
    wake(K, #ids, paused)
    return #ids
end


local DECLARE_KNOWN = 'priorities, order, weights, max_attempts, backoff_base_ms, ' ..
                          'backoff_cap_ms, timeout_ms, lease_ms, result_ttl_ms, max_payload, ' ..
                          'max_result, service, tenant_weights, tenant_max_inflight, ' ..
                          'tenant_rate, tenant_rate_ms, tenant_tokens, tenant_tokens_ms, ' ..
                          'service_gate'
local DECLARE_KEYS = {}
for k in DECLARE_KNOWN:gmatch('[%w_]+') do
    DECLARE_KEYS[k] = true
end

-- corral_declare: KEYS[1] queue; ARGV[1] settings JSON {priorities, order,
-- weights, max_attempts, backoff_base_ms, backoff_cap_ms, timeout_ms, lease_ms,
-- result_ttl_ms, max_payload, max_result, service, tenant_weights,
-- tenant_max_inflight, tenant_rate, tenant_rate_ms, tenant_tokens,
-- tenant_tokens_ms} -> "OK". Registers or
-- updates a queue. Jobs of priority levels that no longer exist move to the
-- lowest remaining level.
local function corral_declare(keys, args)
    local K, q, prefix = queue_key(keys[1])
    local ok, s = pcall(json_decode, args[1] or '')
    if not ok or type(s) ~= 'table' then
        fail('BADSETTING', 'queue "%s": settings must be a JSON object', q)
    end
    for k, _ in pairs(s) do
        if not DECLARE_KEYS[k] then
            fail('BADSETTING', 'queue "%s": unknown setting "%s" (known: %s)', q, shown(k):sub(1, 64),
                 DECLARE_KNOWN)
        end
    end
    local prios = s.priorities or {'high', 'normal', 'low'}
    if type(prios) ~= 'table' or #prios < 1 or #prios > 16 then
        fail('BADSETTING', 'queue "%s": priorities must be a list of 1 to 16 names', q)
    end
    local seen = {}
    for _, p in ipairs(prios) do
        if not valid_name(p) or p:find(',') then
            fail('BADSETTING', 'queue "%s": bad priority name "%s"', q, shown(p))
        end
        if seen[p] then
            fail('BADSETTING', 'queue "%s": priority "%s" is listed twice', q, p)
        end
        seen[p] = true
    end
    local order = s.order or 'strict'
    if order ~= 'strict' and order ~= 'weighted' then
        fail('BADSETTING', 'queue "%s": order must be strict or weighted', q)
    end
    local weights = {}
    for i = 1, #prios do
        local w = (type(s.weights) == 'table' and s.weights[i]) or 1
        weights[i] = tostring(int_arg('BADSETTING', w, 'weight', 1, 1000000))
    end
    local fields = {
        'priorities', table.concat(prios, ','), 'order', order, 'weights',
        table.concat(weights, ','),
        'max_attempts', int_arg('BADSETTING', s.max_attempts or 5, 'max_attempts', 1, 1000),
        'backoff_base_ms', int_arg('BADSETTING', s.backoff_base_ms or 1000, 'backoff_base_ms', 1, 2 ^ 40),
        'backoff_cap_ms', int_arg('BADSETTING', s.backoff_cap_ms or 300000, 'backoff_cap_ms', 1, 2 ^ 40),
        'timeout_ms', int_arg('BADSETTING', s.timeout_ms or 60000, 'timeout_ms', 1, 2 ^ 40),
        'lease_ms', int_arg('BADSETTING', s.lease_ms or 30000, 'lease_ms', 100, 2 ^ 40),
        'result_ttl_ms', int_arg('BADSETTING', s.result_ttl_ms or 86400000, 'result_ttl_ms', 1000, 2 ^ 45),
        'max_payload', int_arg('BADSETTING', s.max_payload or 1048576, 'max_payload', 1, 512 * 1048576),
        'max_result', int_arg('BADSETTING', s.max_result or 1048576, 'max_result', 1, 512 * 1048576),
        'service', fb_declared(q, s.service) -- fallback.lua: one name or a list
    }
    if fields[10] > fields[12] then
        fail('BADSETTING', 'queue "%s": backoff_base_ms (%d) is above backoff_cap_ms (%d)', q, fields[10],
             fields[12])
    end
    tenant_declare(K, q, s, fields) -- tenants.lua: checked before anything is written
    gate.declare(q, s, fields) -- gate.lua: service_gate (a Redis Cluster)
    local old = rcall('HGET', K .. ':conf', 'priorities')
    if old then
        local nold = #split(old)
        local last = #prios - 1
        for level = #prios, nold - 1 do
            local src = K .. ':q:' .. level
            local ids = rcall('LRANGE', src, 0, -1)
            for _, id in ipairs(ids) do
                rcall('HSET', job_key(K, id), 'prio', last, 'priority', prios[#prios])
            end
            rcall('DEL', src)
            if #ids > 0 then
                tenant_ready(K, last, '', ids, false)
            end
            tenant_move_level(K, level, last, prios[#prios])
        end
    end
    local values = {}
    for i = 2, #fields, 2 do
        values[#values + 1] = fields[i]
    end
    fields[#fields + 1] = 'packed'
    fields[#fields + 1] = conf_packed(values)
    fields[#fields + 1] = 'paused' -- load_conf: queues paused before library version 7
    fields[#fields + 1] = rcall('EXISTS', K .. ':paused') == 1 and '1' or '0'
    rcall('HSET', K .. ':conf', unpack(fields))
    rcall('DEL', K .. ':wrr')
    -- The registry is in a slot of its own: on a Redis Cluster this call
    -- may not reach it, and the caller adds q with a separate SADD routed
    -- there (docs/design.md, "Redis Cluster slots"); one Redis takes it here.
    redis.pcall('SADD', prefix .. ':queues', q)
    return 'OK'
end

-- Picks the next priority level to serve, or nil when every level is empty.
-- lens holds each level's length and is kept up to date by the caller.
local function picker(K, c, tenanted)
    local n = #c.priorities
    local lens = {}
    local turns = tenanted and tenant_turns(K, c, now_ms())
    for i = 0, n - 1 do
        lens[i] = rcall('LLEN', K .. ':q:' .. i) + (turns and tenant_waiting(K, i) or 0)
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
        end, function() end, function()
            local left = 0
            for i = 0, n - 1 do
                left = left + lens[i]
            end
            return left
        end, turns
    end
    -- Smooth weighted round-robin (as nginx's upstreams) over the non-empty
    -- levels: every level is served in proportion to its weight, none starves.
    local cur = {}
    local saved = rcall('HMGET', K .. ':wrr', unpack((function()
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
        rcall('HSET', K .. ':wrr', unpack(f))
    end
    local left = function()
        local total = 0
        for i = 0, n - 1 do
            total = total + lens[i]
        end
        return total
    end
    return pick, save, left, turns
end

-- Leases the job id to worker (reserve_jobs): appends its reply entry to
-- out and its lease to leases (ZADD arguments); a job whose record is gone
-- (its result expired while it waited) is dropped.
local function lease_one(K, r, id, out, leases)
    local jk = job_key(K, id)
    local j = rcall('HMGET', jk, 'attempts', 'max_attempts', 'run', 'timeout_ms', 'priority',
                        'service', 'payload', 'tokens', 'deadline_at_ms')
    if not j[1] then
        return
    end
    -- Numbers from the record's texts: the queue's own settings, or small
    -- integers (prelude: int_texts), without tonumber where they match.
    local c = r.c
    local timeout = j[4] == c.timeout_t and c.timeout_ms or tonumber(j[4])
    if j[9] then -- control.lua: past its deadline it ends dead; else at most the time left
        timeout = deadline_lease(K, r.c, id, jk, r.now, j[9], timeout)
        if timeout == nil then
            tenant_release_job(K, r.c, jk) -- tenants.lua: tenant_pop counted it started
            return
        end
    end
    if r.tok then -- tokens.lua: the token and spend budgets
        local verdict, why = tok_take(r.tok, jk, id, j[3], j[7], j[8])
        if verdict == 'dead' then
            to_dead(K, r.c, id, jk, r.now, why)
            tenant_release_job(K, r.c, jk)
        end
        if verdict ~= 'ok' then
            return verdict
        end
    end
    local attempts = (int_texts[j[1]] or tonumber(j[1])) + 1
    local run = itxt((int_texts[j[3]] or tonumber(j[3])) + 1)
    if r.probe then
        rcall('HSET', jk, 'state', 'active', 'attempts', itxt(attempts), 'run', run,
              'started_ms', r.now_t, 'started_us', r.now_u, 'worker', r.worker, 'probe', '1')
    else
        rcall('HSET', jk, 'state', 'active', 'attempts', itxt(attempts), 'run', run,
              'started_ms', r.now_t, 'started_us', r.now_u, 'worker', r.worker)
    end
    if r.served then -- fallback.lua: the service this run calls
        rcall('HSET', jk, 'served_by', r.served, 'served_model', r.model or '')
    end
    leases[#leases + 1] = r.deadline_t
    leases[#leases + 1] = id
    out[#out + 1] = {id, run, attempts, j[2] == c.max_attempts_t and c.max_attempts or tonumber(j[2]),
                     timeout, j[5], r.served or j[6], j[7]}
end

-- Checks reserve's arguments worker, n and max_inflight (strings or nil);
-- returns n and max_inflight as numbers.
local function reserve_args(worker, n, max_inflight)
    if worker == nil or worker == '' or #worker > 128 then
        fail('BADARG', 'reserve: worker id must be 1-128 bytes')
    end
    return int_arg('BADARG', n or 1, 'reserve count', 1, MAX_BATCH),
           int_arg('BADARG', max_inflight or 0, 'max_inflight', 0, 1000000)
end

-- Jobs popped by a reserve that the token or spend budget holds back
-- (tokens.lua) go back to the front of where they came from, in order:
-- ids[from..] of level (0-based). Taken from the tenants' turns, each goes
-- back to its tenant's list and gives back its running slot and its
-- estimate in the tenant's token window (its rate window keeps the count:
-- it errs on the side of the limit).
local function unpop_held(K, c, level, ids, from, turns)
    if not turns then
        tok_unpop(c.qkeys[level + 1], ids, from)
        return
    end
    for k = #ids, from, -1 do
        local jk = job_key(K, ids[k])
        make_ready(K, c, ids[k], jk, true)
        tenant_release_job(K, c, jk)
        if c.tenant_tokens > 0 then
            ttok.unpop(K, c, jk) -- tenant_tokens.lua: its estimate leaves the window
        end
    end
end

-- The work of corral_reserve (and of corral_ack's trailing reserve) once
-- its arguments are checked: leases up to n jobs to worker and returns the
-- reply list. gated: the caller knows the gate element (it passed
-- max_inflight). now, now_u and now_t are the call's clock (prelude: clock);
-- tenanted, paused and due are load_conf's answers. shared: corral_ack_reserve's
-- breaker batch (services.lua's svc_batch with a host), whose state the
-- acks left: not read again, and the host's calls in flight written net.
local function reserve_jobs(K, c, prefix, worker, n, max_inflight, gated, now, now_u, tenanted,
                            now_t, paused, due, shared)
    promote_due(K, c, now, MAX_BATCH, now_t, due, paused)
    if paused or (paused == nil and rcall('EXISTS', c.paused) == 1) then
        rcall('DEL', c.wake)
        return {}
    end
    local s, host, allowed, gate_until, gate_why, served = nil, nil, n, nil, nil, nil
    if c.services then -- fallback.lua: the first service of the list that takes calls
        s, host, allowed, gate_until, gate_why, served = fb_choose(K, c, prefix, worker, now, n,
                                                                   max_inflight)
    elseif c.service ~= '' then
        host = worker_host(worker) -- its calls in flight read with the hot fields (load_svc)
        s = shared and shared.s or load_svc(svc_key(prefix, c.service, c), c.service, now, host)
        if s ~= nil then
            allowed, gate_until, gate_why = svc_gate(s, now, n, host, max_inflight)
        end
    end
    if c.gate_served then -- gate.lua: on a Cluster the worker names the list's service
        served = c.gate_served
    end
    local r = {c = c, now = now, now_t = now_t, now_u = now_u, worker = worker,
               deadline_t = itxt(now + c.lease_ms), probe = s ~= nil and s.state == 'half_open',
               served = served, model = served and (s and s.model or c.gate_model),
               tok = allowed > 0 and tok_begin(s, now, K) or nil}
    local out, leases = {}, {}
    local waiting
    if c.order ~= 'weighted' then
        -- Strict order: the highest non-empty level first, up to the rest
        -- of the count at once (LPOP with a count); an empty level answers
        -- nil. With named tenants waiting, each level's jobs come round
        -- robin between its tenants (tenants.lua).
        local turns = tenanted and tenant_turns(K, c, now)
        local level = 1
        while #out < allowed and level <= #c.qkeys do
            local want = allowed - #out
            local ids
            if turns then -- tenants.lua: from the first level from here with jobs
                ids, level = tenant_next(K, c, level, want, now, s)
            else
                ids = rcall('LPOP', c.qkeys[level], itxt(want))
            end
            if ids then
                for k, id in ipairs(ids) do
                    if lease_one(K, r, id, out, leases) == 'wait' then
                        unpop_held(K, c, level - 1, ids, k, turns) -- held back by the budgets
                        allowed = #out
                        break
                    end
                end
            end
            if not ids or #ids < want then
                level = level + 1
            end
        end
        -- tenants.lua: with turns, what the last pop saw may answer it
        waiting = turns and tenant_left(c) or
                      rcall('EXISTS', unpack(turns and c.tall or c.qkeys))
    else
        local pick, save, left, turns = picker(K, c, tenanted)
        while #out < allowed do
            local level = pick()
            if level == nil then
                break
            end
            local id
            if turns then
                id = tenant_pop(K, c, level, 1, now, s)[1]
            else
                id = rcall('LPOP', c.qkeys[level + 1])
            end
            if id and lease_one(K, r, id, out, leases) == 'wait' then
                unpop_held(K, c, level, {id}, 1, turns) -- held back by the budgets
                break
            end
        end
        save()
        waiting = left()
    end
    if #leases > 0 then
        rcall('ZADD', c.active, unpack(leases))
    end
    if s ~= nil then
        svc_granted(s, now, #out, host, shared)
    end
    if served then
        fb_served(K, now, served, #out) -- fallback.lua
    end
    if r.tok then -- tokens.lua: the grants written; jobs held back gate the worker
        tok_finish(r.tok)
        if r.tok.until_ms then
            gate_until, gate_why = r.tok.until_ms, r.tok.why
        end
    end
    if waiting == 0 then
        -- Nothing left: markers would only wake idle workers for nothing.
        rcall('DEL', c.wake)
    end
    -- Only callers that pass max_inflight (library version 2 workers, with
    -- 0 for none) know the gate element; older ones just get fewer jobs.
    if gate_until ~= nil and waiting > 0 and gated then
        -- Jobs wait for the service: the worker sleeps on the service's
        -- wake list of its host until gate_until or a state change.
        rcall('HINCRBY', s.key .. ':sl', host, 1)
        rcall('HSET', s.key, 'sleepers', 1)
        -- Relative, so that the worker's clock need not agree with Redis's.
        out[#out + 1] = string.format('gate %d %s', math.max(gate_until - now, 1), gate_why)
    end
    return out
end

-- corral_reserve: KEYS[1] queue; ARGV[1] worker id; ARGV[2] how many jobs
-- (1-1000); ARGV[3] optional max_inflight (0 = none); ARGV[4], ARGV[5]
-- optional, a gated queue's service and model (gate.lua's gate.served)
-- -> a list of jobs,
-- each a list {id, run, attempts, max_attempts, timeout_ms, priority,
-- service, payload}, and, when the queue's service holds jobs back and the
-- caller passed max_inflight, a last element "gate <ms> <why>". Promotes
-- due scheduled jobs first. Empty while the queue is paused. Each job is
-- leased to the worker for the queue's lease time; the run token must
-- accompany its ack/fail/defer/renew.
local function corral_reserve(keys, args)
    local K, q, prefix = queue_key(keys[1])
    local c, tenanted, paused, due = load_conf(K, q, 2)
    local n, max_inflight = reserve_args(args[1], args[2], args[3])
    c.gate_served, c.gate_model = gate.served(q, c, args[4], args[5]) -- gate.lua
    local now, now_u, now_t = clock()
    return reserve_jobs(K, c, prefix, args[1], n, max_inflight, args[3] ~= nil, now, now_u,
                        tenanted, now_t, paused, due)
end

-- corral_promote: KEYS[1] queue; ARGV[1] optional limit (default 1000) ->
-- how many due scheduled jobs were made ready (idle workers are woken).
local function corral_promote(keys, args)
    local K, q = queue_key(keys[1])
    local c = load_conf(K, q)
    return promote_due(K, c, now_ms(), int_arg('BADARG', args[1] or MAX_BATCH, 'limit', 1, 100000))
end


-- corral_dead_retry: KEYS[1] queue; ARGV job ids, or the single argument
-- "--all" -> how many dead jobs were queued again with their attempts reset.
local function corral_dead_retry(keys, args)
    local K, q = queue_key(keys[1])
    local c = load_conf(K, q)
    local ids = args
    if args[1] == '--all' then
        ids = rcall('LRANGE', K .. ':dead', 0, -1)
    else
        for _, id in ipairs(ids) do -- all or nothing
            local state = rcall('HGET', job_key(K, id), 'state')
            if state ~= 'dead' then
                fail(state and 'NOTDEAD' or 'NOJOB', 'queue "%s": job %s is not dead (%s)', q,
                     tostring(id):sub(1, 40),
                     state and ('state ' .. state) or 'no such job')
            end
        end
    end
    local now = now_ms()
    local n = 0
    for _, id in ipairs(ids) do
        local jk = job_key(K, id)
        local j = rcall('HMGET', jk, 'state')
        if j[1] == 'dead' then
            rcall('LREM', K .. ':dead', 1, id)
            rcall('HSET', jk, 'state', 'queued', 'attempts', 0, 'queued_ms', now)
            rcall('HDEL', jk, 'finished_ms', 'probe') -- probe: runs.lua's ack_jobs
            rcall('DEL', K .. ':fin:' .. id)
            make_ready(K, c, id, jk, false)
            n = n + 1
        end
    end
    wake(K, n)
    return n
end

-- corral_dead_purge: KEYS[1] queue -> how many dead jobs were deleted.
local function corral_dead_purge(keys, args)
    local K, q = queue_key(keys[1])
    load_conf(K, q)
    local ids = rcall('LRANGE', K .. ':dead', 0, -1)
    for _, id in ipairs(ids) do
        local jk = job_key(K, id)
        local uk = rcall('HGET', jk, 'unique_key')
        if uk then
            rcall('DEL', K .. ':uniq:' .. uk)
        end
        rcall('DEL', jk, K .. ':fin:' .. id)
    end
    rcall('DEL', K .. ':dead')
    return #ids
end

-- corral_pause: KEYS[1] queue -> "OK". While paused, reserve hands out
-- nothing; enqueue, retries and promotion go on.
local function corral_pause(keys, args)
    local K, q = queue_key(keys[1])
    load_conf(K, q)
    rcall('SET', K .. ':paused', now_ms())
    rcall('HSET', K .. ':conf', 'paused', '1') -- what load_conf reads
    return 'OK'
end

-- corral_resume: KEYS[1] queue -> "OK". Reserve hands out jobs again;
-- idle workers are woken when jobs wait.
local function corral_resume(keys, args)
    local K, q = queue_key(keys[1])
    local c = load_conf(K, q)
    rcall('DEL', K .. ':paused')
    rcall('HSET', K .. ':conf', 'paused', '0') -- what load_conf reads
    local n = 0
    for i = 0, #c.priorities - 1 do
        n = n + rcall('LLEN', K .. ':q:' .. i)
    end
    if n > 0 then
        wake(K, n, false)
    end
    return 'OK'
end

-- corral_cancel: control.lua (queued, scheduled, dead and running jobs).

local NUMERIC = {attempts = true, max_attempts = true, timeout_ms = true, created_ms = true,
                 deadline_at_ms = true,
                 run_at_ms = true, queued_ms = true, started_ms = true, finished_ms = true,
                 deferrals = true, prio = true, run = true}
-- created_us and started_us stay strings: cjson prints numbers with 14
-- significant digits, too few for microseconds since 1970.

-- corral_job: KEYS[1] queue; ARGV[1] job id -> the job as a JSON object, or
-- nil when there is no such job (never existed, or its result expired).
local function corral_job(keys, args)
    local K, q = queue_key(keys[1])
    local h = rcall('HGETALL', job_key(K, args[1] or ''))
    if #h == 0 then
        load_conf(K, q) -- an unknown queue is an error, an unknown id is nil
        return nil
    end
    local j = {}
    for i = 1, #h, 2 do
        local k, v = h[i], h[i + 1]
        if NUMERIC[k] then
            j[k] = tonumber(v)
        elseif k == 'result' or k == 'error' or k == 'payload' then
            j[k] = utf8_clean(v) -- bytes from outside
        elseif tok_job_field(j, k, v) then -- tokens.lua: usage, the estimate
        elseif k ~= 'lost' and k ~= 'reclaimed' then -- internal (lost: before version 4)
            j[k] = v
        end
    end
    return cjson.encode(j)
end

