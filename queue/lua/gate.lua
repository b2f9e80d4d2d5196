-- gate.lua: the service gate, a queue's service on a Redis Cluster
-- (docs/design.md, "Redis Cluster slots"; docs/protocol.md, "The service
-- gate"). On one Redis a queue's reserve, ack, fail and defer update its
-- service's breaker and limits in the same call (services.lua); on a
-- Cluster the service's keys lie in another slot, so the queue is declared
-- with service_gate (its calls then leave the service alone: prelude.lua's
-- load_conf) and the worker asks the gate, on the service's slot, for
-- permits before it reserves, and reports how its calls ended. The gate
-- applies services.lua's breaker, rate and max_inflight and tokens.lua's
-- budgets through their functions. Keys of a service S, all derived from
-- the one key declared, "<prefix>:{svc:S}" (any service key works: on one
-- Redis "<prefix>:svc:S" too), so on a Cluster all in the slot of "svc:S":
--   <SK>        hash  services.lua's (settings, breaker, inflight:<host>,
--                     rate_seq, which also names permits, ...)
--   <SK>:rl, <SK>:sl, <SK>:wake:<host>   as services.lua's
--   <SK>:tk, <SK>:st:<minute>            as tokens.lua's
--   <SK>:pm     zset  "<id>|<probe>|<worker>" per permit granted and not yet
--                     reported, scored by when it expires (ms); an expired
--                     permit is dropped by the next call (its host's call slot
--                     and probe given back), so a crashed worker leaks none

-- The module's functions are fields of one table, gate (declared in
-- prelude.lua: tokens.lua adds gate.ledger; the library's main chunk may
-- hold no more than 200 locals).

-- corral_declare's service_gate (s: its settings object), appended to
-- fields (K:conf, in CONF_FIELDS' order): "1" or "0". A fallback list is
-- allowed: the worker asks the gates of its services in order and names
-- the one that granted its permits in the reserve (gate.served).
function gate.declare(q, s, fields)
    local on = s.service_gate
    if on ~= nil and type(on) ~= 'boolean' then
        fail('BADSETTING', 'queue "%s": service_gate must be true or false', q)
    end
    fields[#fields + 1] = 'service_gate'
    fields[#fields + 1] = on and '1' or '0'
end

-- corral_reserve's ARGV[4] and ARGV[5] on a gated queue with a fallback
-- list (c.gated_list, prelude.lua's load_conf): the service whose gate
-- granted the reserve's permits and its model; each job leased then names
-- them (served_by, served_model) as fallback.lua's reserve does on one
-- Redis. Returns the name and model, or nil when not given.
function gate.served(q, c, name, model)
    if name == nil or name == '' then
        return nil
    end
    for _, s in ipairs(c.gated_list or {}) do
        if s == name then
            if model ~= nil and #model > 256 then
                fail('BADARG', 'reserve: model must be at most 256 bytes')
            end
            return name, model ~= '' and model or nil
        end
    end
    fail('BADARG', 'reserve: service "%s" is not in the service list of queue "%s"',
         shown(name):sub(1, 64), q)
end

-- A breaker batch of the service (services.lua's svc_batch, for a state
-- already loaded).
function gate.batch(s)
    return {s = s, ok = 0, fail = 0, slow = 0, pok = 0, pfail = 0, prel = 0, hosts = {},
            fail_why = ''}
end

-- Drops the permits that expired before now: each gives back its host's
-- call slot and its probe (svc_apply), as a reclaimed job does.
function gate.sweep(s, now)
    local pk = s.key .. ':pm'
    local old = rcall('ZRANGEBYSCORE', pk, '-inf', now)
    if #old == 0 then
        return
    end
    rcall('ZREMRANGEBYSCORE', pk, '-inf', now)
    local b = gate.batch(s)
    for _, m in ipairs(old) do
        local probe, worker = m:match('^%d+|(%d)|(.*)$')
        svc_leave_read(b, pk .. ':none', now, nil, nil, 'active', worker, probe)
    end
    svc_apply(b, now)
    s.host_inflight = nil -- svc_gate reads it again
end

-- The worker id argument, checked.
function gate.worker(w)
    if w == nil or w == '' or #w > 128 or w:find('|', 1, true) then
        fail('BADARG', 'gate: worker id must be 1-128 bytes without "|"')
    end
    return w
end

-- corral_gate_acquire: KEYS[1] service; ARGV[1] worker id, ARGV[2] how
-- many permits (1-1000), ARGV[3] max_inflight of the worker's host (0 =
-- none), ARGV[4] how long a permit lasts unreported (ms, 100-86400000) ->
-- {granted, first_id, probe, wait_ms, why}: permits first_id ..
-- first_id+granted-1 (probe 1: half-open probe calls); when fewer than
-- asked, wait_ms (> 0) and why say for how long and why the service takes
-- no more calls. The breaker, rate, max_inflight and budgets decide as
-- they do for a reserve on one Redis (services.lua's svc_gate).
function gate.acquire(keys, args)
    local SK, name = service_key(keys[1])
    local worker = gate.worker(args[1])
    local n = int_arg('BADARG', args[2] or 1, 'permit count', 1, MAX_BATCH)
    local mi = int_arg('BADARG', args[3] or 0, 'max_inflight', 0, 1000000)
    local ttl = int_arg('BADARG', args[4] or 60000, 'permit ttl_ms', 100, 86400000)
    local now = now_ms()
    local host = worker_host(worker)
    local s = load_svc(SK, name, now, host) or known_service(SK, name)
    gate.sweep(s, now)
    local allowed, upto, why = svc_gate(s, now, n, host, mi)
    if allowed > 0 and fb_no_budget(s, now, '') then -- fallback.lua: tokens.lua's budgets
        allowed, upto, why = 0, now + 1000, 'token or spend budget used up (service ' .. name .. ')'
    end
    svc_granted(s, now, allowed, host)
    local probe, first = s.state == 'half_open' and '1' or '0', 0
    if allowed > 0 then
        -- Permits are named as svc_granted names the rate log's entries
        -- (rate_seq), so an unused one takes its entry back (gate.report).
        local seq = s.rate > 0 and tonumber(rcall('HGET', SK, 'rate_seq')) or
                        rcall('HINCRBY', SK, 'rate_seq', allowed)
        first = seq - allowed + 1
        local z = {}
        for id = first, first + allowed - 1 do
            z[#z + 1] = now + ttl
            z[#z + 1] = id .. '|' .. probe .. '|' .. worker
        end
        rcall('ZADD', SK .. ':pm', unpack(z))
    end
    return {allowed, first, tonumber(probe), upto and math.max(upto - now, 1) or 0, why or ''}
end

gate.KINDS = {ok = 'ok', fail = 'fail', none = false, unused = false, throttle = false,
              quota = false}

-- corral_gate_report: KEYS[1] service; ARGV[1] worker id, then groups of
-- eight: permit_id probe kind ms why input_tokens output_tokens cost_nano
-- -> how many of the permits were still held (the others had expired).
-- kind: ok (the service answered), fail (a breaker failure: a 5xx, a
-- timeout), none (the call does not count: a deferral), unused (no call
-- was made: the permit found no job; its rate entry is taken back), throttle (a 429: ms is its Retry-After), quota (a billing
-- error); ms: how long the call took (slow calls count against the
-- breaker). input_tokens -1: no usage; else the tokens and cost count in
-- the service's token window and spend budget (tokens.lua), as a
-- settlement does on one Redis. Each permit's call slot and probe are given
-- back; the outcomes go into the breaker's window at once (svc_apply).
function gate.report(keys, args)
    local SK, name = service_key(keys[1])
    local worker = gate.worker(args[1])
    if (#args - 1) % 8 ~= 0 then
        fail('BADARG', 'gate report: a worker id, then groups of eight: permit_id probe kind ' ..
                 'ms why input_tokens output_tokens cost_nano')
    end
    local now = now_ms()
    local s = load_svc(SK, name, now) or known_service(SK, name)
    gate.sweep(s, now) -- so that the breaker's view counts no dead worker's calls either
    local b, pk, held = gate.batch(s), SK .. ':pm', 0
    for i = 2, #args, 8 do
        local kind, ms = args[i + 2], int_arg('BADARG', args[i + 3], 'ms', 0, 2 ^ 40)
        if gate.KINDS[kind] == nil then
            fail('BADARG', 'gate report: kind must be ok, fail, none, unused, throttle or ' ..
                     'quota, got "%s"',
                 tostring(kind):sub(1, 32))
        end
        local tin = int_arg('BADARG', args[i + 5], 'input_tokens', -1, 1e9)
        local tout = int_arg('BADARG', args[i + 6], 'output_tokens', 0, 1e9)
        local cost = int_arg('BADARG', args[i + 7], 'cost_nano', 0, 9e15)
        local live = rcall('ZREM', pk, args[i] .. '|' .. args[i + 1] .. '|' .. worker) == 1
        held = held + (live and 1 or 0)
        -- services.lua's svc_leave_read, for a call without a job record
        -- (the HDEL of its probe field names a key that never exists).
        svc_leave_read(b, pk .. ':none', now, gate.KINDS[kind] or nil, args[i + 4],
                       live and 'active' or 'gone', worker, live and args[i + 1] or '0', now - ms)
        if kind == 'unused' and live and s.rate > 0 then
            rcall('ZREM', SK .. ':rl', args[i])
        elseif kind == 'throttle' then
            svc_throttle(b, now, ms, args[i + 4])
        elseif kind == 'quota' then
            svc_quota(b, now, args[i + 4])
        end
        if tin >= 0 then
            gate.usage(s, now, worker .. '|' .. args[i], tin, tout, cost)
        end
    end
    svc_apply(b, now)
    return held
end

-- A call's real usage in the service's token window and spend budget
-- (tokens.lua's keys and fields): one grant of its tokens at now, so the
-- window holds it for tokens_period_ms as a settled grant on one Redis.
function gate.usage(s, now, who, tin, tout, cost)
    local tokens = tin + tout
    if s.tokens > 0 and tokens > 0 then
        local tk = s.key .. ':tk'
        rcall('ZADD', tk, now, 'gate|' .. who .. ':' .. tokens)
        rcall('PEXPIRE', tk, s.tokens_period_ms + 60000)
        rcall('HINCRBY', s.key, 'tok_used', tokens)
    end
    gate.ledger(s, now, tin, tout, cost) -- tokens.lua: the totals and the spend
end
