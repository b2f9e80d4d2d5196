-- tokens.lua: a service's token budget per window and spend budget per
-- period, fleet-wide, granted in the reserve that leases a job; the
-- settlement of each call with its real usage (corral_settle), and the
-- usage and cost ledger (docs/tokens.md). Keys of a service S (outside the
-- queues' slots, as services.lua's):
--   <prefix>:svc:S        hash  (services.lua) and: tok_used (tokens of the
--     grants in S:tk), tok_cap and tok_cap_until
--     (the provider's remaining tokens, from its headers, until its reset),
--     tok_wait_until_ms and tok_wait_why (the last reserve the budgets held
--     back), spend_period and spent_nano (the spend of the current budget
--     period), usage_in, usage_out, usage_cost_nano, usage_calls (totals)
--   <prefix>:svc:S:tk     zset  "<K>|<id>|<run>:<tokens>" per grant, by its time
--   <prefix>:svc:S:st:<minute> hash  tin, tout, cost (nano), calls
-- Of a queue K: K:st:<minute> (stats.lua) gets tin, tout, cost, tcalls;
-- K:tok (hash) the totals in, out, cost_nano, calls, estimated; a job's
-- record gets tokens (the enqueue option), tok_est_in, tok_est_out,
-- tok_grant and tok_grant_run (its grant in S:tk), usage (JSON) and
-- settled:<run>.

local TOKENS_MAX = 1000000000
local CAP_FIELDS = {'max_tokens', 'max_completion_tokens', 'max_output_tokens'}

-- A duration as the config writes it: 1m, 30s, 2h, 1d, 250ms.
local function dur_text(ms)
    for _, u in ipairs({{86400000, 'd'}, {3600000, 'h'}, {60000, 'm'}, {1000, 's'}}) do
        if ms > 0 and ms % u[1] == 0 then
            return string.format('%d%s', ms / u[1], u[2])
        end
    end
    return string.format('%dms', ms)
end

-- Nano-units as money text: 0.00525, 20.
local function money_text(nano)
    local s = string.format('%d.%09d', math.floor(nano / 1e9), nano % 1e9)
    return (s:gsub('0+$', ''):gsub('%.$', ''))
end

-- The enqueue option `tokens` (docs/protocol.md): a whole number from 1 to
-- 10^9, refused with its own code word, BADTOKENS.
local function tok_option(q, v)
    if type(v) ~= 'number' or v ~= math.floor(v) or v < 1 or v > TOKENS_MAX then
        fail('BADTOKENS', 'queue "%s": tokens must be a whole number from 1 to %d, got %s', q,
             TOKENS_MAX, shown(v):sub(1, 40))
    end
    return v
end

-- A job's estimate (input, output): the option `tokens` as input, else the
-- payload's size over bytes_per_token plus its output cap, as
-- common/tokens.c's corral_tokens_estimate.
local function tok_estimate(s, payload, opt)
    if opt then
        return opt, 0
    end
    local cap = 0
    -- Most payloads name no cap: no decode for them.
    local ok, v = false, nil
    if payload:find('max_', 1, true) then
        ok, v = pcall(json_decode, payload)
    end
    if ok and type(v) == 'table' then
        for _, f in ipairs(CAP_FIELDS) do
            local x = v[f]
            if type(x) == 'number' and x == math.floor(x) and x >= 1 and x <= TOKENS_MAX and
                x > cap then
                cap = x
            end
        end
    end
    return math.ceil(#payload / math.max(s.bytes_per_token, 1)), cap
end

-- The cost in nano-units of in and out tokens at the service's prices
-- (per million tokens, nano-units), rounded half up.
local function tok_cost(s, input, output)
    return math.floor((input * s.price_input + output * s.price_output) / 1e6 + 0.5)
end

-- Drops the grants older than the window from S:tk and from tok_used.
local function tok_expire(s, now)
    local tk, edge = s.key .. ':tk', now - s.tokens_period_ms
    local old = rcall('ZRANGEBYSCORE', tk, '-inf', edge)
    if #old == 0 then
        return
    end
    local sum = 0
    for _, m in ipairs(old) do
        sum = sum + (tonumber(m:match(':(%-?%d+)$')) or 0)
    end
    rcall('ZREMRANGEBYSCORE', tk, '-inf', edge)
    rcall('HINCRBY', s.key, 'tok_used', -sum)
end

-- The budgets' state for one reserve, or nil when the service has none.
local function tok_begin(s, now, q)
    if s == nil or (s.tokens <= 0 and s.budget <= 0) then
        return nil
    end
    local t = {s = s, now = now, left = math.huge, adds = {}, granted = 0, q = q}
    if s.tokens > 0 then
        tok_expire(s, now)
    end
    local v = rcall('HMGET', s.key, 'tok_used', 'tok_cap', 'tok_cap_until', 'spend_period',
                         'spent_nano', 'tok_wait_until_ms')
    t.shown_wait = (tonumber(v[6]) or 0) > now
    if s.tokens > 0 then
        t.left = s.tokens - (tonumber(v[1]) or 0)
        local until_ms = tonumber(v[3]) or 0
        if until_ms > now and (tonumber(v[2]) or 0) < t.left then
            t.cap, t.cap_until = tonumber(v[2]) or 0, until_ms
            t.left = t.cap
        end
    end
    if s.budget > 0 then
        local idx = math.floor(now / s.budget_period_ms)
        t.spent = tonumber(v[4]) == idx and (tonumber(v[5]) or 0) or 0
        t.spend_until = (idx + 1) * s.budget_period_ms
    end
    return t
end

-- Whether the job id (record jk, its run so far, payload, tokens option)
-- may be leased
-- now: 'ok' (its estimate is counted in the window), 'wait' (t.until_ms
-- and t.why say till when and why) or 'dead' and the reason (it could
-- never fit). The grants are written by tok_finish, once per reserve.
local function tok_take(t, jk, id, run, payload, opt)
    local s = t.s
    local est_in, est_out = tok_estimate(s, payload, tonumber(opt))
    local est = est_in + est_out
    if s.tokens > 0 and est > s.tokens then
        return 'dead', string.format(
            'the estimate of %d tokens is above the budget of %d tokens per %s (service %s)', est,
            s.tokens, dur_text(s.tokens_period_ms), s.name)
    end
    if s.budget > 0 then
        local cost = tok_cost(s, est_in, est_out)
        if cost > s.budget then
            return 'dead', string.format(
                'the estimated cost of %s is above the spend budget of %s per %s (service %s)',
                money_text(cost), money_text(s.budget), dur_text(s.budget_period_ms), s.name)
        end
        if t.spent >= s.budget then
            t.until_ms, t.why = t.spend_until, string.format(
                'spend budget: %s of %s per %s spent', money_text(t.spent), money_text(s.budget),
                dur_text(s.budget_period_ms))
            return 'wait'
        end
    end
    local member = ''
    run = tonumber(run) + 1 -- the run lease_one is about to give the job
    if s.tokens > 0 then
        if est > t.left then
            -- Room comes when the oldest grant leaves the window (this
            -- reserve's own grants are not written yet: they are now's).
            local first = rcall('ZRANGE', s.key .. ':tk', 0, 0, 'WITHSCORES')
            local oldest = tonumber(first[2]) or (#t.adds > 0 and t.now) or nil
            t.until_ms = oldest and oldest + s.tokens_period_ms + 1 or t.now + 1000
            if t.cap and t.cap < s.tokens then
                t.until_ms = t.cap_until
            end
            t.why = string.format('token budget: %d tokens do not fit the %d left of %d per %s',
                                  est, math.max(t.left, 0), s.tokens, dur_text(s.tokens_period_ms))
            return 'wait'
        end
        -- Unique per queue, job and run; the estimate last (tok_expire reads it).
        member = t.q .. '|' .. id .. '|' .. run .. ':' .. est
        t.adds[#t.adds + 1] = t.now
        t.adds[#t.adds + 1] = member
        t.granted = t.granted + est
        t.left = t.left - est
    end
    rcall('HSET', jk, 'tok_est_in', est_in, 'tok_est_out', est_out, 'tok_grant', member,
               'tok_grant_run', run)
    return 'ok'
end

-- Writes a reserve's grants into the window (one ZADD, one HINCRBY) and,
-- when the budgets held jobs back, why (for status).
local function tok_finish(t)
    local s = t.s
    if #t.adds > 0 then
        local tk = s.key .. ':tk'
        rcall('ZADD', tk, unpack(t.adds))
        rcall('PEXPIRE', tk, s.tokens_period_ms + 60000)
        rcall('HINCRBY', s.key, 'tok_used', t.granted)
        if t.cap then
            rcall('HINCRBY', s.key, 'tok_cap', -t.granted)
        end
    end
    if t.until_ms then
        rcall('HSET', s.key, 'tok_wait_until_ms', t.until_ms, 'tok_wait_why', t.why)
    elseif t.shown_wait and #t.adds > 0 then
        -- Jobs fit again: status and the scaler stop showing the wait.
        rcall('HSET', s.key, 'tok_wait_until_ms', 0)
    end
end

-- Puts ids[from..] back at the front of list lk, in their order: the jobs a
-- reserve popped but the budgets held back (no attempt spent).
local function tok_unpop(lk, ids, from)
    local back = {}
    for k = #ids, from, -1 do
        back[#back + 1] = ids[k]
    end
    if #back > 0 then
        rcall('LPUSH', lk, unpack(back))
    end
end

-- Adds n (nano-units or tokens) to field f of the service's minute bucket.
local function tok_stat(s, now, f, n)
    local bk = s.key .. ':st:' .. math.floor(now / 60000)
    if rcall('HINCRBY', bk, f, n) == n then
        rcall('EXPIRE', bk, STATS_TTL_S)
    end
end

-- corral_settle: KEYS[1] queue; ARGV worker, then groups of nine: id run
-- input_tokens output_tokens model estimated cost_nano remaining reset_ms
-- ... -> per job "settled", or "SETTLED" (that run was settled before:
-- nothing is counted twice) or "STALE" (no such run). input_tokens -1: the
-- call has no usage (it failed before the service counted it): the window
-- gets its estimate back and nothing is added to the ledger. remaining and
-- reset_ms (-1 for none): the provider's view of its token window, which
-- caps the service's window until then. Sent by the worker before the
-- outcome of the same run (docs/protocol.md).
local function corral_settle(keys, args)
    local K, q, prefix = queue_key(keys[1])
    local c = load_conf(K, q)
    if (#args - 1) % 9 ~= 0 or args[1] == nil or args[1] == '' then
        fail('BADARG', 'settle: a worker id, then groups of nine: id run input_tokens ' ..
                 'output_tokens model estimated cost_nano remaining reset_ms')
    end
    for i = 2, #args, 9 do
        int_arg('BADARG', args[i + 2], 'input_tokens', -1, TOKENS_MAX)
        int_arg('BADARG', args[i + 3], 'output_tokens', -1, TOKENS_MAX)
        int_arg('BADARG', args[i + 6], 'cost_nano', 0, 9e15)
        int_arg('BADARG', args[i + 7], 'remaining', -1, 1e15)
        int_arg('BADARG', args[i + 8], 'reset_ms', -1, 366 * 86400000)
    end
    local now = now_ms()
    local s = nil
    if c.service ~= '' then
        s = load_svc(svc_key(prefix, c.service), c.service)
    end
    local out = {}
    for i = 2, #args, 9 do
        local id, run, model = args[i], args[i + 1], args[i + 4]
        local input, output = tonumber(args[i + 2]), tonumber(args[i + 3])
        local estimated, cost = args[i + 5] == '1', tonumber(args[i + 6])
        local jk = job_key(K, id)
        local j = rcall('HMGET', jk, 'run', 'settled:' .. run, 'tok_grant', 'tok_grant_run',
                             'tok_est_in', 'tok_est_out', 'tokens', 'tenant', 'tok_tenant',
                             'served_by')
        local r = tonumber(run)
        local s = s
        if c.services and j[10] and j[10] ~= c.service then -- fallback.lua: the service it used
            s = load_svc(svc_key(prefix, j[10]), j[10])
        end
        if not j[1] or r == nil or r < 1 or r > tonumber(j[1]) then
            out[#out + 1] = 'STALE'
        elseif j[2] then
            out[#out + 1] = 'SETTLED'
        else
            rcall('HSET', jk, 'settled:' .. run, '1')
            if input >= 0 and estimated and j[7] and s then
                -- The option `tokens` was the estimate: the worker did not know it.
                input, output = tonumber(j[5]) or input, tonumber(j[6]) or output
                cost = tok_cost(s, input, output)
            end
            local real = input >= 0 and input + output or 0
            if j[9] then -- tenant_tokens.lua: the tenant's window counts the real tokens
                ttok.settle(K, c, j[8], j[9], run, real, now)
            end
            if s and j[3] and j[3] ~= '' and j[4] == run then
                local tk = s.key .. ':tk'
                local at = rcall('ZSCORE', tk, j[3])
                if at then
                    local head, est = j[3]:match('^(.*):(%-?%d+)$')
                    rcall('ZREM', tk, j[3])
                    rcall('ZADD', tk, at, head .. ':' .. real)
                    rcall('HINCRBY', s.key, 'tok_used', real - tonumber(est))
                    if real < tonumber(est) then
                        svc_wake(s, nil) -- room given back: workers held by it may go
                    end
                end
            end
            if input >= 0 then
                local usage = {input_tokens = input, output_tokens = output, model = model,
                               estimated = estimated, cost = cost / 1e9, cost_nano = cost}
                rcall('HSET', jk, 'usage', cjson.encode(usage))
                stat(K, now, 'tin', input)
                stat(K, now, 'tout', output)
                stat(K, now, 'cost', cost)
                stat(K, now, 'tcalls', 1)
                local tot = K .. ':tok'
                rcall('HINCRBY', tot, 'in', input)
                rcall('HINCRBY', tot, 'out', output)
                rcall('HINCRBY', tot, 'cost_nano', cost)
                rcall('HINCRBY', tot, 'calls', 1)
                if estimated then
                    rcall('HINCRBY', tot, 'estimated', 1)
                end
                if s then
                    gate.ledger(s, now, input, output, cost)
                end
            end
            local remaining, reset = tonumber(args[i + 7]), tonumber(args[i + 8])
            if s and s.tokens > 0 and remaining >= 0 and reset > 0 then
                rcall('HSET', s.key, 'tok_cap', remaining, 'tok_cap_until', now + reset)
            end
            out[#out + 1] = 'settled'
        end
    end
    return out
end

-- A call's usage in the service's ledger: its minute bucket, its totals and
-- the spend of its budget period. On gate.lua's table (declared in
-- prelude.lua: the library's main chunk may hold no more locals), which
-- counts a call reported to the service gate the same way.
function gate.ledger(s, now, input, output, cost)
    tok_stat(s, now, 'tin', input)
    tok_stat(s, now, 'tout', output)
    tok_stat(s, now, 'cost', cost)
    tok_stat(s, now, 'calls', 1)
    rcall('HINCRBY', s.key, 'usage_in', input)
    rcall('HINCRBY', s.key, 'usage_out', output)
    rcall('HINCRBY', s.key, 'usage_cost_nano', cost)
    rcall('HINCRBY', s.key, 'usage_calls', 1)
    if s.budget > 0 and cost > 0 then
        local idx = math.floor(now / s.budget_period_ms)
        if tonumber(rcall('HGET', s.key, 'spend_period')) ~= idx then
            rcall('HSET', s.key, 'spend_period', idx, 'spent_nano', 0)
        end
        rcall('HINCRBY', s.key, 'spent_nano', cost)
    end
end

-- Sums fields of the service's minute buckets from minute lo to hi.
local function tok_sum(s, lo, hi)
    local sum = {tin = 0, tout = 0, cost = 0, calls = 0}
    for m = lo, hi do
        local v = rcall('HMGET', s.key .. ':st:' .. m, 'tin', 'tout', 'cost', 'calls')
        sum.tin = sum.tin + (tonumber(v[1]) or 0)
        sum.tout = sum.tout + (tonumber(v[2]) or 0)
        sum.cost = sum.cost + (tonumber(v[3]) or 0)
        sum.calls = sum.calls + (tonumber(v[4]) or 0)
    end
    return sum
end

-- Adds the budgets and the usage to a service's view v (services.lua's
-- svc_view; read-only): tokens_limit, tokens_period_ms, tokens_used,
-- tokens_left, budget, spent, budget_period_ms, the totals and rates.
tok_view = function(s, now, v)
    local f = rcall('HMGET', s.key, 'tok_used', 'tok_cap', 'tok_cap_until',
                         'tok_wait_until_ms', 'tok_wait_why', 'spend_period', 'spent_nano',
                         'usage_in', 'usage_out', 'usage_cost_nano', 'usage_calls')
    v.tokens_limit, v.tokens_period_ms = s.tokens, s.tokens_period_ms
    if s.tokens > 0 then
        local used = 0
        for _, g in ipairs(rcall('ZRANGEBYSCORE', s.key .. ':tk',
                                      '(' .. (now - s.tokens_period_ms), '+inf')) do
            used = used + (tonumber(g:match(':(%-?%d+)$')) or 0)
        end
        local left = s.tokens - used
        if (tonumber(f[3]) or 0) > now then
            left = math.min(left, tonumber(f[2]) or 0)
            v.tokens_provider_remaining = tonumber(f[2]) or 0
        end
        v.tokens_used, v.tokens_left = used, math.max(left, 0)
    end
    if (tonumber(f[4]) or 0) > now then
        v.tokens_wait_until_ms, v.tokens_wait_reason = tonumber(f[4]), utf8_clean(f[5] or '')
        if v.hold == '' then
            v.hold = v.tokens_wait_reason
        end
    end
    if s.budget > 0 then
        local idx = math.floor(now / s.budget_period_ms)
        v.budget, v.budget_nano, v.budget_period_ms = s.budget / 1e9, s.budget, s.budget_period_ms
        v.spent_nano = tonumber(f[6]) == idx and (tonumber(f[7]) or 0) or 0
        v.spent = v.spent_nano / 1e9
    end
    local m = math.floor(now / 60000)
    -- Rates over the last whole minute and this one, as corral_stats' default.
    local last = tok_sum(s, m - 1, m)
    local span_ms = now - (m - 1) * 60000
    v.tokens_per_min = math.floor((last.tin + last.tout) * 60000 / span_ms + 0.5)
    v.cost_per_hour = math.floor(last.cost * 3600000 / span_ms + 0.5) / 1e9
    v.usage = {input_tokens = tonumber(f[8]) or 0, output_tokens = tonumber(f[9]) or 0,
               cost_nano = tonumber(f[10]) or 0, calls = tonumber(f[11]) or 0}
    v.usage.cost = v.usage.cost_nano / 1e9
end

-- corral_job's view of tokens.lua's fields of a job record: usage as an
-- object; tokens, tok_est_in and tok_est_out as numbers; the grants (the
-- service's, the tenant's: tenant_tokens.lua) and the settled runs left
-- out. Returns true when k is one of them.
local function tok_job_field(j, k, v)
    if k == 'usage' then
        local ok, u = pcall(json_decode, utf8_clean(v))
        j.usage = ok and u or nil
    elseif k == 'tokens' or k == 'tok_est_in' or k == 'tok_est_out' then
        j[k] = tonumber(v)
    elseif not (k == 'tok_grant' or k == 'tok_grant_run' or k == 'tok_tenant' or
                k:sub(1, 8) == 'settled:') then
        return false
    end
    return true
end

-- A queue's usage totals since it was declared (corral_stats' usage_total).
tok_totals = function(K)
    local v = rcall('HMGET', K .. ':tok', 'in', 'out', 'cost_nano', 'calls', 'estimated')
    return {input_tokens = tonumber(v[1]) or 0, output_tokens = tonumber(v[2]) or 0,
            cost_nano = tonumber(v[3]) or 0, cost = (tonumber(v[3]) or 0) / 1e9,
            calls = tonumber(v[4]) or 0, estimated = tonumber(v[5]) or 0}
end
