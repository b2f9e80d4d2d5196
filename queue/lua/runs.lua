-- runs.lua: a run of a job, from its lease to its outcome: renew, ack,
-- fail, defer, and the reclaim of leases that were lost. Only the run that
-- holds the lease may report (run_status; docs/invariants.md). Keys: the
-- queue's (jobs.lua), derived from K = KEYS[1]; the queue's service's
-- (services.lua), derived from K's prefix and K:conf's service.

-- Whether a run (its token and worker id) may report on its job: 'active'
-- when it holds the job's lease; 'RECLAIMED' when this very run's lease was
-- taken back (reclaim_one records the run it took in the job's "reclaimed"
-- field: the job was requeued or ended dead, and may since have been
-- cancelled or retried by an operator); 'STALE' otherwise: no such job, a
-- run that never was (run 0), a newer run, another worker's run, or a run
-- that already reported. Only an 'active' run may change the job, so a
-- final state changes by corral_dead_retry alone (docs/invariants.md). The
-- worker check matters when ids start again (FLUSHALL, a failover to an
-- empty replica): a run still going from before must not report on the new
-- job of the same id and run number.
local function run_status_of(j, run, worker)
    if not j[1] or run == '0' or j[2] ~= run or j[3] ~= worker then
        return 'STALE'
    end
    if j[1] == 'active' then
        return 'active'
    end
    return j[4] == run and 'RECLAIMED' or 'STALE'
end

-- run_status of the job at jk, read here.
local function run_status(jk, run, worker)
    return run_status_of(rcall('HMGET', jk, 'state', 'run', 'worker', 'reclaimed'), run, worker)
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


-- corral_renew: KEYS[1] queue; ARGV worker, then pairs id run ... -> per
-- job "active" (lease extended from now), "RECLAIMED" (this run's lease was
-- taken back: stop the run, its outcome would be dropped) or "STALE" (no
-- such run of this worker: a newer run, or the job ended or is gone).
local function corral_renew(keys, args)
    local K, q = queue_key(keys[1])
    local c = load_conf(K, q)
    local now = now_ms()
    local out = {}
    for i = 2, #args - 1, 2 do
        local id, run = args[i], args[i + 1]
        local st = run_status(job_key(K, id), run, args[1])
        if st == 'active' then
            rcall('ZADD', K .. ':active', now + c.lease_ms, id)
        end
        out[#out + 1] = st
    end
    return out
end

-- The outcome triples (id run result) of corral_ack from args[first] on,
-- for worker, applied with the call's clock now -> the per-job answers.
-- One HMGET per job reads what run_status, the breaker and finish need;
-- the leases are dropped with one ZREM and the statistics written once.
-- now_t: now as text (prelude: clock). shared: corral_ack_reserve's batch
-- (false: the queue's service is not declared), or nil: made here.
local function ack_jobs(K, c, prefix, worker, args, first, now, now_t, shared)
    -- fallback.lua: per service its jobs used; only hot fields (load_svc)
    local b = shared
    if b == nil then
        b = fb_batch(K, c, prefix, now)
    elseif b == false then
        b = nil
    end
    local out, acc, done = {}, {}, {}
    for i = first, #args - 2, 3 do
        local id, run, result = args[i], args[i + 1], args[i + 2]
        local jk = job_key(K, id)
        -- Fields a job seldom has are left out of the HMGET: in a small
        -- job's hash (a listpack) an absent field costs a scan of the whole
        -- record. "reclaimed" matters only to a run that is not active
        -- (run_status reads it then); "probe" only with a service whose
        -- breaker is not closed (svc_leave_read ignores it without one, and
        -- a closed breaker's window counts a probe's success as any other;
        -- dead jobs lose it on corral_dead_retry).
        local j
        if b and (b.fb or b.s.state ~= 'closed') then
            j = rcall('HMGET', jk, 'state', 'run', 'worker', 'started_ms', 'unique_key',
                      'probe')
        else
            j = rcall('HMGET', jk, 'state', 'run', 'worker', 'started_ms', 'unique_key')
        end
        local st = 'active'
        if j[1] ~= 'active' or run == '0' or j[2] ~= run or j[3] ~= worker then
            st = run_status(jk, run, worker)
        end
        if st ~= 'active' then
            out[#out + 1] = st
        else
            local started = tonumber(j[4]) -- once for the breaker and the statistics
            svc_leave_read(fb_for(b, jk), jk, now, 'ok', nil, j[1], j[3], j[6], started)
            tenant_release_job(K, c, jk) -- tenants.lua: with tenant_max_inflight only
            done[#done + 1] = id
            if #result > c.max_result then
                to_dead(K, c, id, jk, now, string.format(
                    'result is %d bytes, limit is %d (max_result)', #result, c.max_result))
                stat_proc_add(acc, now, 'fail', started)
                out[#out + 1] = 'dead'
            else
                finish(K, c, id, jk, 'done', now_t, 'result', result, false, j[5], true)
                stat_proc_add(acc, now, 'done', started)
                out[#out + 1] = 'done'
            end
        end
    end
    if #done > 0 then
        rcall('ZREM', c.active, unpack(done))
    end
    stat_flush(K, now, acc)
    fb_apply(b, now)
    return out
end

-- corral_ack: KEYS[1] queue; ARGV worker, then triples id run result ... ->
-- per job "done", "dead" (the result is over max_result), or a refusal
-- that writes nothing: "RECLAIMED" (this run's lease was taken back) or
-- "STALE" (no such run of this worker), as corral_renew answers.
local function corral_ack(keys, args)
    local K, q, prefix = queue_key(keys[1])
    local c = load_conf(K, q, -1)
    local now, _, now_t = clock()
    return ack_jobs(K, c, prefix, args[1], args, 2, now, now_t)
end

-- corral_ack_reserve: KEYS[1] queue; ARGV worker, n, max_inflight, then
-- triples id run result ... -> {acks, jobs}: acks as corral_ack answers
-- (one word per triple), then jobs as corral_reserve answers for
-- (worker, n, max_inflight), gate element included. One round trip per job
-- at steady state: a worker sends its outcomes and asks for its next jobs
-- at once (docs/protocol.md). The same as corral_ack then corral_reserve,
-- in one call: every argument is checked before anything is written; the
-- acks apply first (so the calls they end free their slots of
-- max_inflight, and a breaker they trip holds the reserve back); the
-- reserve then sees the queue as a separate call would (paused: no jobs).
local function corral_ack_reserve(keys, args)
    local K, q, prefix = queue_key(keys[1])
    local c, tenanted, paused, due = load_conf(K, q, 2)
    local worker = args[1]
    local n, max_inflight = reserve_args(worker, args[2], args[3])
    if (#args - 3) % 3 ~= 0 then
        fail('BADARG', 'ack_reserve: after worker, n and max_inflight come triples id run ' ..
                 'result; got %d arguments', #args - 3)
    end
    local now, now_u, now_t = clock()
    -- One service (no fallback list): its state read once for both halves
    -- and the host's calls in flight written once, net (services.lua's
    -- svc_batch with a host): at steady state no write at all.
    local shared = nil
    if c.service ~= '' and not c.services then
        shared = svc_batch(K, c, prefix, now, worker_host(worker)) or false
    end
    local acks = ack_jobs(K, c, prefix, worker, args, 4, now, now_t, shared)
    local jobs = reserve_jobs(K, c, prefix, worker, n, max_inflight, true, now, now_u, tenanted,
                              now_t, paused, due, shared or nil)
    if shared and shared.granted ~= shared.acked then -- the net: none at steady state
        rcall('HINCRBY', shared.s.key, inflight_field(shared.host),
              itxt(shared.granted - shared.acked))
    end
    return {acks, jobs}
end

-- corral_fail: KEYS[1] queue; ARGV worker, then quadruples id run kind error
-- ... where kind is "retry" or "permanent" -> per job "scheduled" (retry
-- after back-off), "dead" (permanent, or attempts used up), or a refusal:
-- "RECLAIMED" or "STALE" (as corral_renew).
local function corral_fail(keys, args)
    local K, q, prefix = queue_key(keys[1])
    local c, due = load_conf(K, q, -1), false -- due: jobs.lua's sched_due
    for i = 2, #args - 3, 4 do
        local kind = args[i + 2]
        if kind ~= 'retry' and kind ~= 'permanent' then
            fail('BADARG', 'fail: kind must be retry or permanent, got "%s"', tostring(kind):sub(1, 32))
        end
    end
    -- Seed once per call: jobs failing in one batch must get different delays.
    local t = rcall('TIME')
    math.randomseed(tonumber(t[2]) * 1000 + tonumber(t[1]) % 1000)
    local now = now_ms()
    local bs = fb_batch(K, c, prefix) -- fallback.lua: per service its jobs used
    -- Calls that failed while the breaker was already open or half-open
    -- (late calls, failed probes) wait for the breaker, attempt refunded:
    -- the outage, not the job, is to blame.
    local waiting = {}
    local out = {}
    for i = 2, #args - 3, 4 do
        local id, run, kind, err = args[i], args[i + 1], args[i + 2], args[i + 3]
        if #err > 4096 then
            err = err:sub(1, 4096)
        end
        local jk = job_key(K, id)
        local st = run_status(jk, run, args[1])
        local b = st == 'active' and fb_for(bs, jk) or nil
        if st ~= 'active' then
            out[#out + 1] = st
        elseif b ~= nil and b.s.state ~= 'closed' and kind == 'retry' then
            svc_leave(b, jk, now, 'fail', err)
            tenant_release_job(K, c, jk) -- tenants.lua
            rcall('ZREM', K .. ':active', id)
            local attempts = tonumber(rcall('HGET', jk, 'attempts'))
            rcall('HSET', jk, 'attempts', math.max(attempts - 1, 0), 'error', err)
            rcall('HINCRBY', jk, 'deferrals', 1)
            waiting[#waiting + 1] = {id, jk, #out + 1, b}
            out[#out + 1] = 'scheduled'
        else
            -- A permanent failure (4xx) means the service answered: it
            -- counts as a call, not as a breaker failure.
            svc_leave(b, jk, now, kind == 'retry' and 'fail' or 'ok', err)
            tenant_release_job(K, c, jk) -- tenants.lua
            rcall('ZREM', K .. ':active', id)
            local j = rcall('HMGET', jk, 'attempts', 'max_attempts', 'started_ms')
            local attempts, max = tonumber(j[1]), tonumber(j[2])
            stat_proc(K, now, 'fail', j[3])
            local at = kind == 'retry' and attempts < max and now + backoff_ms(c, attempts)
            if kind == 'retry' and deadline_ends(K, c, id, jk, now, at or now) then
                out[#out + 1] = 'dead' -- control.lua: the run or its back-off ends past the deadline
            elseif kind == 'permanent' or attempts >= max then
                if kind == 'retry' then
                    err = string.format('%s (attempt %d of %d)', err, attempts, max)
                end
                to_dead(K, c, id, jk, now, err)
                out[#out + 1] = 'dead'
            else
                rcall('HSET', jk, 'state', 'scheduled', 'error', err, 'run_at_ms', at)
                rcall('ZADD', K .. ':sched', at, id)
                due = sched_due(K, due, at)
                stat(K, now, 'retry')
                out[#out + 1] = 'scheduled'
            end
        end
    end
    fb_apply(bs, now)
    for _, w in ipairs(waiting) do
        -- Spread over a second after the breaker may half-open; with a
        -- fallback list at once, to the next service (fallback.lua).
        local at = math.max(w[4].s.open_until_ms, now) + math.floor(math.random() * 1000)
        if bs.fb then
            at = now
        end
        if deadline_ends(K, c, w[1], w[2], now, at) then -- control.lua
            out[w[3]] = 'dead'
        else
            rcall('HSET', w[2], 'state', 'scheduled', 'run_at_ms', at)
            rcall('ZADD', K .. ':sched', at, w[1])
            due = sched_due(K, due, at)
            if not bs.fb then
                svc_hold_job(w[4], K, w[1])
            end
            stat(K, now, 'defer')
        end
    end
    return out
end

-- corral_defer: KEYS[1] queue; ARGV worker, then groups of five: id run
-- delay_ms kind reason ... -> per job "scheduled", "queued" (delay_ms 0 and
-- nothing holds it back: ready at the front of its level at once), or a
-- refusal: "RECLAIMED" or "STALE" (as corral_renew). The job runs again
-- after delay_ms and its attempt is refunded. kind: "" (plain: a
-- draining worker hands a job back), "throttle" (a 429: the queue's service
-- waits delay_ms fleet-wide) or "quota" (a billing error: the service's
-- breaker opens for breaker_open_max, and the job waits that long). The
-- reason is kept as the job's error. Workers of library version 1 send
-- triples (id run delay_ms): still accepted, as kind "" without a reason.
local DEFER_KINDS = {[''] = true, throttle = true, quota = true}
local function corral_defer(keys, args)
    local K, q, prefix = queue_key(keys[1])
    local c, _, paused = load_conf(K, q, 1)
    local due = false -- jobs.lua's sched_due
    local fives = (#args - 1) % 5 == 0
    for i = 2, #args - 4, 5 do
        fives = fives and DEFER_KINDS[args[i + 3]] ~= nil
    end
    if not fives and (#args - 1) % 3 == 0 then
        local groups = {args[1]} -- a version 1 caller: id run delay_ms
        for i = 2, #args - 2, 3 do
            for _, v in ipairs({args[i], args[i + 1], args[i + 2], '', ''}) do
                groups[#groups + 1] = v
            end
        end
        args = groups
    end
    for i = 2, #args - 4, 5 do
        int_arg('BADARG', args[i + 2], 'delay_ms', 0, 366 * 86400000)
        if not DEFER_KINDS[args[i + 3]] then
            fail('BADARG', 'defer: kind must be "", throttle or quota, got "%s"',
                 tostring(args[i + 3]):sub(1, 32))
        end
    end
    local now = now_ms()
    local bs = fb_batch(K, c, prefix) -- fallback.lua: per service its jobs used
    local out, ready = {}, 0
    for i = 2, #args - 4, 5 do
        local id, run, kind, why = args[i], args[i + 1], args[i + 3], args[i + 4]
        local delay = tonumber(args[i + 2])
        local jk = job_key(K, id)
        local st = run_status(jk, run, args[1])
        if st ~= 'active' then
            out[#out + 1] = st
        else
            local b = fb_for(bs, jk)
            svc_leave(b, jk, now, nil)
            tenant_release_job(K, c, jk) -- tenants.lua
            if kind == 'throttle' then
                svc_throttle(b, now, delay, why)
            elseif kind == 'quota' and b ~= nil then
                delay = math.max(delay, svc_quota(b, now, why))
            end
            if bs and bs.fb and kind ~= '' then
                delay, kind = 0, '' -- fallback.lua: at once, to the next service of the list
            end
            rcall('ZREM', K .. ':active', id)
            if deadline_ends(K, c, id, jk, now, now + delay) then -- control.lua
                out[#out + 1] = 'dead'
            else
                if kind == 'quota' and b ~= nil then
                    svc_hold_job(b, K, id)
                end
                local attempts = tonumber(rcall('HGET', jk, 'attempts'))
                rcall('HSET', jk, 'attempts', math.max(attempts - 1, 0), 'run_at_ms', now + delay)
                if why ~= '' then
                    rcall('HSET', jk, 'error', why:sub(1, 4096))
                end
                rcall('HINCRBY', jk, 'deferrals', 1)
                if delay > 0 or kind == 'quota' then
                    rcall('HSET', jk, 'state', 'scheduled')
                    rcall('ZADD', K .. ':sched', now + delay, id)
                    due = sched_due(K, due, now + delay)
                    out[#out + 1] = 'scheduled'
                else
                    rcall('HSET', jk, 'state', 'queued', 'queued_ms', now)
                    make_ready(K, c, id, jk, true)
                    ready = ready + 1
                    out[#out + 1] = 'queued'
                end
                stat(K, now, 'defer')
            end
        end
    end
    fb_apply(bs, now)
    wake(K, ready, paused)
    return out
end

-- Requeues (at the front of its level) or, with attempts used up, kills a job
-- whose lease is gone. The run it takes is recorded in the job's "reclaimed"
-- field, so that run's later outcome and renew answer RECLAIMED and change
-- nothing (run_status). With unseen set, the job never reached its worker
-- (the reserve's reply was lost): its attempt is given back and it is not
-- counted as lost.
local function reclaim_one(K, c, b, id, now, why, unseen)
    local jk = job_key(K, id)
    rcall('ZREM', K .. ':active', id)
    local j = rcall('HMGET', jk, 'attempts', 'max_attempts', 'worker', 'state', 'run')
    if not j[1] or j[4] ~= 'active' then
        return 0
    end
    svc_leave(fb_for(b, jk), jk, now, nil) -- fallback.lua: the service its run used
    tenant_release_job(K, c, jk) -- tenants.lua
    rcall('HSET', jk, 'reclaimed', j[5])
    local attempts, max = tonumber(j[1]), tonumber(j[2])
    if unseen then -- its attempt back, its last run's error kept
        rcall('HSET', jk, 'state', 'queued', 'queued_ms', now, 'attempts',
              math.max(attempts - 1, 0))
        make_ready(K, c, id, jk, true)
        return 1
    end
    local err = string.format('%s (worker %s, attempt %d of %d)', why, j[3] or '?', attempts, max)
    stat(K, now, 'lost')
    if attempts >= max then
        to_dead(K, c, id, jk, now, err)
    else
        rcall('HSET', jk, 'state', 'queued', 'error', err, 'queued_ms', now)
        make_ready(K, c, id, jk, true)
    end
    return 1
end

-- Reclaims a set of leased jobs: each goes back to the front of its level,
-- and jobs reclaimed together keep their order (oldest id first).
local function reclaim_all(K, c, b, ids, now, why, unseen)
    table.sort(ids, function(x, y)
        local a, z = tonumber(x), tonumber(y)
        if a and z then
            return a < z
        end
        return x < y
    end)
    local n = 0
    for i = #ids, 1, -1 do -- pushed to the front: the last first
        n = n + reclaim_one(K, c, b, ids[i], now, why, unseen)
    end
    return n
end

-- corral_reclaim: KEYS[1] queue; ARGV[1] optional limit -> how many expired
-- leases were reclaimed. Safe to run from every host at once.
local function corral_reclaim(keys, args)
    local K, q, prefix = queue_key(keys[1])
    local c = load_conf(K, q)
    local now = now_ms()
    local b = fb_batch(K, c, prefix) -- fallback.lua
    local limit = int_arg('BADARG', args[1] or MAX_BATCH, 'limit', 1, 100000)
    local ids = rcall('ZRANGEBYSCORE', K .. ':active', '-inf', now, 'LIMIT', 0, limit)
    local n = reclaim_all(K, c, b, ids, now, 'lease expired')
    fb_apply(b, now)
    wake(K, n)
    return n
end

-- corral_reclaim_worker: KEYS[1] queue; ARGV[1] worker id, or a prefix
-- ending in "*" (all workers of a host) -> how many of its leases were
-- reclaimed. corrald calls this the moment a worker dies.
-- With ARGV[2] "keep", a live worker asks (after its connection dropped with
-- a reserve in flight) for the jobs leased to it that it does not hold: the
-- ids it still runs or has outcomes for follow "keep"; every other job leased
-- to that exact worker id never reached it and is requeued with its attempt
-- given back.
local function corral_reclaim_worker(keys, args)
    local K, q, prefix = queue_key(keys[1])
    local c = load_conf(K, q)
    local b = fb_batch(K, c, prefix) -- fallback.lua
    local who = args[1]
    if who == nil or who == '' or who == '*' then
        fail('BADARG', 'reclaim_worker: a worker id or host prefix is required')
    end
    local keep = nil
    if args[2] ~= nil then
        if args[2] ~= 'keep' then
            fail('BADARG', 'reclaim_worker: the second argument must be "keep" (got "%s")', args[2])
        end
        if who:sub(-1) == '*' then
            fail('BADARG', 'reclaim_worker: "keep" needs one worker id, not a host prefix')
        end
        keep = {}
        for i = 3, #args do
            keep[args[i]] = true
        end
    end
    local host = keep == nil and who:sub(-1) == '*' and who:sub(1, -2) or nil
    local now = now_ms()
    local mine = {}
    for _, id in ipairs(rcall('ZRANGE', K .. ':active', 0, -1)) do
        local w = rcall('HGET', job_key(K, id), 'worker') or ''
        if (w == who or (host and w:sub(1, #host) == host)) and not (keep and keep[id]) then
            mine[#mine + 1] = id
        end
    end
    local n
    if keep then
        n = reclaim_all(K, c, b, mine, now, 'reserve reply lost', true)
    else
        n = reclaim_all(K, c, b, mine, now, 'worker died')
    end
    fb_apply(b, now)
    wake(K, n)
    return n
end

