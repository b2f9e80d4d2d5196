-- control.lua: control of a job in flight: corral_cancel of a job in any
-- state but a final one, running jobs included (docs/protocol.md, "Cancel").
-- Keys: the queue's (jobs.lua), derived from K = KEYS[1]; the queue's
-- service's (services.lua), derived from K's prefix and K:conf's service.
-- Channel: <prefix>:ctl:<worker id>, where a running job's worker hears
-- that its run is cancelled (worker/control.c subscribes to it).

-- The channel a worker listens on for its runs' cancels.
local function ctl_channel(prefix, worker)
    return prefix .. ':ctl:' .. worker
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
    local j = redis.call('HMGET', jk, 'state', 'worker', 'run', 'unique_key')
    local state = j[1]
    if not state then
        fail('NOJOB', 'queue "%s": no job %s', q, id:sub(1, 40))
    end
    if state ~= 'queued' and state ~= 'scheduled' and state ~= 'dead' and state ~= 'active' then
        fail('FINISHED', 'queue "%s": job %s is %s and cannot be cancelled', q, id:sub(1, 40),
             state)
    end
    local now = now_ms()
    if state == 'active' then
        local b = svc_batch(K, c, prefix)
        svc_leave(b, jk, now, nil)
        svc_apply(b, now)
    end
    unlink(K, jk, id, state)
    if j[4] then
        redis.call('DEL', K .. ':uniq:' .. j[4])
    end
    finish(K, c, id, jk, 'cancelled', now, {}, false, false)
    if state == 'active' and j[2] then
        redis.call('PUBLISH', ctl_channel(prefix, j[2]), 'cancel ' .. q .. ' ' .. id .. ' ' .. j[3])
    end
    return 'cancelled'
end
