-- control.lua: control of a job in flight: corral_cancel of a job in any
-- state but a final one, running jobs included (docs/protocol.md, "Cancel"),
-- and deadlines (the enqueue option deadline_ms; docs/protocol.md,
-- "Deadlines"): the checks enqueue.lua, jobs.lua (reserve) and runs.lua
-- (fail, defer) call. A job's deadline is its field deadline_at_ms (server
-- clock, ms).
-- Keys: the queue's (jobs.lua), derived from K = KEYS[1]; the queue's
-- service's (services.lua), derived from K's prefix and K:conf's service.
-- Channel: <prefix>:ctl:<worker id>, where a running job's worker hears
-- that its run is cancelled (worker/control.c subscribes to it).

-- The channel a worker listens on for its runs' cancels.
local function ctl_channel(prefix, worker)
    return prefix .. ':ctl:' .. worker
end

-- Cancels the job id (record jk, j its HMGET of state, worker, run,
-- unique_key) in a state it may be cancelled in: see corral_cancel.
-- linked: the job is still in its container (a list, K:sched, K:active).
local function cancel_job(K, c, q, prefix, id, jk, j, now, linked)
    local state = j[1]
    if state == 'active' then
        local b = fb_batch(K, c, prefix) -- fallback.lua: the service its run used
        svc_leave(fb_for(b, jk), jk, now, nil)
        fb_apply(b, now)
        tenant_release_job(K, c, jk) -- tenants.lua: its running slot is free
    end
    if linked then
        unlink(K, jk, id, state)
    end
    if j[4] then
        rcall('DEL', K .. ':uniq:' .. j[4])
    end
    finish(K, c, id, jk, 'cancelled', now, nil, nil, false, false)
    if state == 'active' and j[2] then
        rcall('PUBLISH', ctl_channel(prefix, j[2]), 'cancel ' .. q .. ' ' .. id .. ' ' .. j[3])
        local sk = K .. ':stream:' .. id -- followers of a streamed answer stop here
        if rcall('EXISTS', sk) == 1 then
            rcall('XADD', sk, 'MAXLEN', '~', 10000, '*', 'run', j[3], 'end', 'cancelled',
                       'error', '')
        end
    end
end

-- corral_cancel: KEYS[1] queue; ARGV[1] job id -> "cancelled". A queued,
-- scheduled or dead job leaves its container; a running (active) one
-- leaves its lease (its service's call slot and probe permit freed, the
-- call not counted by the breaker) and its worker is told at once on its
-- control channel with "cancel <queue> <id> <run>", so it aborts the call.
-- The run can report nothing afterwards (run_status: STALE), so the
-- cancel is final whatever the run does (docs/invariants.md, I5 and I6).
-- What the record holds (usage, error, attempts) is kept. Refusals: NOJOB
-- (no such job in this queue), FINISHED (done or cancelled already).
local function corral_cancel(keys, args)
    local K, q, prefix = queue_key(keys[1])
    local c = load_conf(K, q)
    local id = args[1] or ''
    local jk = job_key(K, id)
    local j = rcall('HMGET', jk, 'state', 'worker', 'run', 'unique_key')
    local state = j[1]
    if not state then
        fail('NOJOB', 'queue "%s": no job %s', q, id:sub(1, 40))
    end
    if state ~= 'queued' and state ~= 'scheduled' and state ~= 'dead' and state ~= 'active' then
        fail('FINISHED', 'queue "%s": job %s is %s and cannot be cancelled', q, id:sub(1, 40),
             state)
    end
    cancel_job(K, c, q, prefix, id, jk, j, now_ms(), true)
    return 'cancelled'
end

-- corral_cancel_tenant: KEYS[1] queue; ARGV[1] tenant; ARGV[2] optional
-- cursor ("0", the default, to start); ARGV[3] optional limit (1-10000,
-- default 1000) -> {cancelled, cursor}: cancels, as corral_cancel does
-- (docs/protocol.md, "Cancel"), the tenant's jobs that are queued, then
-- those scheduled, then those running, looking at no more than about
-- limit jobs per call; call again with the cursor answered until it is
-- "0". Queued jobs come from the tenant's lists (each level's, at most
-- limit of them per call; cursor "q0"), scheduled and running ones from a
-- ZSCAN of K:sched and K:active (cursor "s<n>" and "a<n>"), whose every job's
-- tenant is read. An unknown tenant cancels nothing. Refusals: BADTENANT
-- (not a tenant name), BADARG (a bad cursor or limit).
local function corral_cancel_tenant(keys, args)
    local K, q, prefix = queue_key(keys[1])
    local c = load_conf(K, q)
    local t = args[1]
    if not valid_tenant(t) then
        fail('BADTENANT', 'queue "%s": bad tenant "%s": use 1-64 bytes of A-Z a-z 0-9 _ . : @ -',
             q, shown(t):sub(1, 80))
    end
    local phase, at = (args[2] or '0'):match('^([qsa]?)(%d+)$')
    if not phase then
        fail('BADARG', 'cancel_tenant: bad cursor "%s"', shown(args[2]):sub(1, 40))
    end
    local budget = int_arg('BADARG', args[3] or 1000, 'limit', 1, 10000)
    local now, n = now_ms(), 0
    if phase == '' or phase == 'q' then -- the queued jobs, each level's list in turn
        for level = 0, #c.priorities - 1 do
            local lk = tenant_list(K, level, t)
            local ids = rcall('LPOP', lk, itxt(budget)) or {}
            if #ids > 0 then
                tfn.waiting_add(K, level, -#ids)
                budget = budget - #ids
                for _, id in ipairs(ids) do
                    local jk = job_key(K, id)
                    local j = rcall('HMGET', jk, 'state', 'worker', 'run', 'unique_key')
                    if j[1] == 'queued' then -- else its record expired while it waited
                        cancel_job(K, c, q, prefix, id, jk, j, now, false)
                        n = n + 1
                    end
                end
                if rcall('EXISTS', lk) == 1 then
                    return {n, 'q0'} -- more next call
                end
                tfn.tenant_leave(K, level, t) -- tenants.lua: no place, no key left
            end
            if budget == 0 then
                return {n, level == #c.priorities - 1 and 's0' or 'q0'}
            end
        end
        phase, at = 's', '0'
    end
    while true do
        local r = rcall('ZSCAN', phase == 's' and c.sched or c.active, at, 'COUNT',
                             itxt(budget))
        local items = r[2]
        at = r[1]
        for i = 1, #items, 2 do
            local id = items[i]
            local jk = job_key(K, id)
            local j = rcall('HMGET', jk, 'state', 'worker', 'run', 'unique_key', 'tenant')
            if j[5] == t and (j[1] == 'scheduled' or j[1] == 'active') then
                cancel_job(K, c, q, prefix, id, jk, j, now, true)
                n = n + 1
            end
        end
        budget = budget - #items / 2
        if at == '0' then
            if phase == 'a' then
                return {n, '0'}
            end
            phase = 'a'
        end
        if budget <= 0 then
            return {n, phase .. at}
        end
    end
end

local DEADLINE_EXCEEDED = 'deadline exceeded'
local DEADLINE_MAX_MS = 366 * 86400000

-- The enqueue option deadline_ms (milliseconds from now, like delay_ms): a
-- positive integer, else a refusal BADDEADLINE naming the value.
local function deadline_option(q, v)
    if type(v) ~= 'number' or v ~= math.floor(v) or v < 1 or v > DEADLINE_MAX_MS then
        fail('BADDEADLINE', 'queue "%s": deadline_ms must be a positive integer of milliseconds ' ..
                 '(at most %d), got %s', q, DEADLINE_MAX_MS, shown(v):sub(1, 40))
    end
    return v
end

-- A job leaving its lease (fail, defer) whose next try would start at
-- `at` (ms) or later, past its deadline: ends it dead at once ("deadline
-- exceeded") rather than let it wait for nothing -> true; false when it
-- has no deadline or may still run. The caller has dropped its lease.
local function deadline_ends(K, c, id, jk, now, at)
    local d = tonumber(rcall('HGET', jk, 'deadline_at_ms'))
    if d == nil or at < d then
        return false
    end
    to_dead(K, c, id, jk, now, DEADLINE_EXCEEDED)
    return true
end

-- Reserve (lease_one): a job past its deadline is not started again and
-- ends dead -> nil; else the timeout its run gets, at most the time left
-- before the deadline, so the worker's own timer stops the call there.
-- (Declared in jobs.lua, which calls it.)
deadline_lease = function(K, c, id, jk, now, deadline_at, timeout)
    local d = tonumber(deadline_at)
    if d == nil then
        return timeout
    end
    if now >= d then
        to_dead(K, c, id, jk, now, DEADLINE_EXCEEDED)
        return nil
    end
    return math.min(timeout, d - now)
end

-- Streamed answers (docs/protocol.md, "Streamed answers"). K:stream:<id>
-- is a Redis Stream of a job's answer as the worker reads it: entries
-- {run, text} with each piece of the text, and {run, end, error} when the
-- worker has read the whole answer (end "complete") or stopped reading
-- (end "failed", error saying why); a cancel adds {run, end "cancelled"}.
-- A new run of the job (a retry) streams its answer again under its own
-- run number. Capped at about STREAM_MAXLEN entries; it expires
-- result_ttl after the job's time limit, so no longer than the job's
-- result outlives its end by more than the limit.
local STREAM_MAXLEN = 10000
local STREAM_KINDS = {text = true, complete = true, failed = true}

local function stream_key(K, id)
    return K .. ':stream:' .. id
end

-- corral_stream_append: KEYS[1] queue; ARGV worker, id, run, kind, then
-- for kind "text" one or more pieces of text, for "complete" or "failed"
-- an optional error -> "active" (appended), or "STALE" / "RECLAIMED" as
-- corral_renew answers, writing nothing: only the run that holds the
-- lease streams.
local function corral_stream_append(keys, args)
    local K, q = queue_key(keys[1])
    local c = load_conf(K, q)
    local worker, id, run = args[1], args[2], args[3]
    local kind = args[4] or ''
    if not (worker and id and run) or not STREAM_KINDS[kind] or
        (kind == 'text' and #args < 5) or (kind ~= 'text' and #args > 5) then
        fail('BADARG', 'stream_append: expected worker, id, run, then text and pieces of ' ..
                 'text, or complete or failed and an optional error')
    end
    local jk = job_key(K, id)
    local j = rcall('HMGET', jk, 'state', 'run', 'worker', 'reclaimed', 'timeout_ms')
    if j[1] ~= 'active' or j[2] ~= run or j[3] ~= worker then
        return (j[1] and j[2] == run and j[3] == worker and j[4] == run) and 'RECLAIMED' or 'STALE'
    end
    local sk = stream_key(K, id)
    if kind ~= 'text' then
        rcall('XADD', sk, 'MAXLEN', '~', STREAM_MAXLEN, '*', 'run', run, 'end', kind,
                   'error', (args[5] or ''):sub(1, 4096))
    else
        for i = 5, #args do
            rcall('XADD', sk, 'MAXLEN', '~', STREAM_MAXLEN, '*', 'run', run, 'text', args[i])
        end
    end
    rcall('PEXPIRE', sk, c.result_ttl_ms + (tonumber(j[5]) or c.timeout_ms))
    return 'active'
end
