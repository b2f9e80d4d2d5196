-- tenants.lua: fair shares between the tenants of a queue (the enqueue
-- option "tenant"; docs/protocol.md, "Tenants"). Within each priority
-- level the next job comes from the next tenant in turn among those with
-- jobs waiting (round robin, a tenant of weight W serving W jobs per turn,
-- FIFO within a tenant); a tenant at its limit (tenant_max_inflight,
-- tenant_rate, tenant_tokens) steps out of the turn until it has room. Every step is O(1)
-- per job however many tenants wait. Keys, derived from the queue key K:
--   K:tq:<level>          list   the turn: tenants with jobs waiting at the
--                                level, next first ("" = the default tenant,
--                                whose jobs stay in K:q:<level>); exists only
--                                while a named tenant waits at the level
--   K:t:<level>:<tenant>  list   a named tenant's waiting job ids, FIFO
--   K:tn                  hash   "#<level>" -> named tenants' jobs waiting
--                                at the level (corral_stats' depth)
--   K:ti                  hash   tenant -> jobs running (kept with
--                                tenant_max_inflight only)
--   K:tcr                 hash   "<level>" -> "<served> <tenant>": how many
--                                jobs the head of the turn served this turn
--                                (with weights only)
--   K:tpark               zset   "<level>|<tenant>" of tenants out of the turn
--                                at their limit -> when to look again (ms)
--   K:tr:<tenant>         string jobs started in the tenant's rate window
--                                (expires with the window)
--   K:tt:<tenant>         string the tenant's token window (tenant_tokens.lua)
-- Weights live in K:conf (field tenant_weights, "NAME:W,..."), so that the
-- settings cache (load_conf) has them without a call. A tenant with
-- nothing waiting or running holds no key and no field. Jobs without the
-- option (the default tenant) take their turn but are not limited. What
-- status shows of the tenants: tenant_status.lua.

-- The module's own helpers, as fields of one table: the library is one
-- Lua chunk, whose main function may hold no more than 200 locals.
local tfn = {}

-- tenant_tokens.lua's functions (room, count, settle, unpop, declare):
-- the tenants' token windows, with tenant_tokens only.
local ttok = {}

local function valid_tenant(s)
    return type(s) == 'string' and #s >= 1 and #s <= 64 and not s:find('[^%w_%.:@%-]')
end

local function tenant_list(K, level, t, c) -- c: settings tenant_conf has seen, or nil
    if c then
        return t == '' and c.qkeys[level + 1] or c.tlists[level + 1] .. t
    elseif t == '' then
        return K .. ':q:' .. itxt(level)
    end
    return K .. ':t:' .. itxt(level) .. ':' .. t
end

-- An enqueue's options '{"tenant":"T"}' (or '{"tenant": "T"}', as json.dumps
-- writes them) -> T when valid, as the JSON decoder would give it (a valid
-- name holds nothing JSON escapes), without decoding; else nil (decoded).
-- One pattern both finds and checks it (valid_tenant's alphabet; its
-- length here): no substrings made.
function tfn.tenant_option(text)
    local t = text:match('^{"tenant": ?"([%w_%.:@%-]+)"}$')
    return t and #t <= 64 and t or nil
end

-- The queue's weights (K:conf's tenant_weights, "NAME:W,...") as a table.
function tfn.tenant_weights_parse(text)
    local w = {}
    for item in string.gmatch(text or '', '[^,]+') do
        local name, n = item:match('^(.*):(%d+)$')
        if name then
            w[name] = tonumber(n)
        end
    end
    return w
end

function tfn.tenant_weights_text(w)
    local names = {}
    for name, n in pairs(w) do
        if n ~= 1 then
            names[#names + 1] = name
        end
    end
    table.sort(names)
    for i, name in ipairs(names) do
        names[i] = name .. ':' .. w[name]
    end
    return table.concat(names, ',')
end

-- What the hot path needs of the settings, derived once per cached
-- settings table (from K and K:conf alone): the turn keys, and the
-- weights.
local function tenant_conf(K, c)
    if c.tturns == nil then
        local turns, all = {}, {} -- tlists: list keys but the name; tnf: K:tn's fields
        c.tlists, c.tnf, c.tnk = {}, {}, K .. ':tn'
        for i = 1, #c.priorities do
            turns[i] = K .. ':tq:' .. (i - 1)
            c.tlists[i], c.tnf[i] = K .. ':t:' .. (i - 1) .. ':', '#' .. (i - 1)
            all[i] = c.qkeys[i]
            all[#c.priorities + i] = turns[i]
        end
        c.tall = all -- the ready lists and the turns: "is anything waiting?"
        c.tweights = tfn.tenant_weights_parse(c.tenant_weights)
        c.tweighted = next(c.tweights) ~= nil
        c.tlimited = c.tenant_max_inflight > 0 or c.tenant_rate > 0 or c.tenant_tokens > 0
        -- tenant_next's first look: the turns and default lists of the
        -- levels above the default one, which one EXISTS skips when empty.
        c.tabove = {}
        for i = 1, default_level(c) do
            c.tabove[2 * i - 1], c.tabove[2 * i] = turns[i], c.qkeys[i]
        end
        c.tturns = turns
    end
    return c
end

-- Puts t at the back of the turn of level. A named tenant that starts the
-- turn while default jobs wait at the level comes after the default tenant.
function tfn.turn_join(K, level, t, c) -- c: as tenant_list's
    local tq = c and c.tturns[level + 1] or K .. ':tq:' .. itxt(level)
    if rcall('RPUSH', tq, t) == 1 and t ~= '' and
        rcall('EXISTS', K .. ':q:' .. itxt(level)) == 1 then
        rcall('LPUSH', tq, '')
    end
end

-- The default list of level just went from empty to holding jobs: it
-- joins the turn when the level has one.
local function tenant_default_joined(K, level)
    local tq = K .. ':tq:' .. itxt(level)
    if rcall('EXISTS', tq) == 1 then
        rcall('RPUSH', tq, '')
    end
end

-- -> the named tenants' jobs now waiting at level. c: as tenant_list's.
function tfn.waiting_add(K, level, n, c)
    local tn = c and c.tnk or K .. ':tn'
    local f = c and c.tnf[level + 1] or '#' .. itxt(level)
    local left = rcall('HINCRBY', tn, f, itxt(n))
    if left <= 0 then
        rcall('HDEL', tn, f)
    end
    return left
end

-- The named tenants' jobs the current reserve's last pop left waiting at
-- its level (the count's HINCRBY answers it): tenant_left. Set by
-- tenant_pop, reset by tenant_turns at the start of each reserve.
tfn.tenant_seen = 0

-- Makes ids (jobs of tenant t, "" for the default) ready at level: at the
-- back, or at the front (front: requeued after a lost lease or a defer).
-- c: the queue's settings, when the caller has them: a queue without
-- limits parks no tenant (tenant_declare unparks all when they go), so
-- its tenants join without looking at the parked ones.
local function tenant_ready(K, level, t, ids, front, c)
    c = c and tenant_conf(K, c)
    if c and t ~= '' then -- a named tenant's with the names at hand: the calls inline
        local n = rcall(front and 'LPUSH' or 'RPUSH', c.tlists[level + 1] .. t, unpack(ids))
        rcall('HINCRBY', c.tnk, c.tnf[level + 1], itxt(#ids)) -- waiting_add of n > 0
        if n == #ids and (not c.tlimited or
            rcall('ZSCORE', K .. ':tpark', itxt(level) .. '|' .. t) == false) and
            rcall('RPUSH', c.tturns[level + 1], t) == 1 and -- turn_join's
            rcall('EXISTS', c.qkeys[level + 1]) == 1 then
            rcall('LPUSH', c.tturns[level + 1], '')
        end
        return
    end
    local n = rcall(front and 'LPUSH' or 'RPUSH', tenant_list(K, level, t, c), unpack(ids))
    if t ~= '' then
        tfn.waiting_add(K, level, #ids, c)
    end
    if n == #ids then
        if t == '' then
            tenant_default_joined(K, level)
        elseif (c and not c.tlimited) or
            rcall('ZSCORE', K .. ':tpark', itxt(level) .. '|' .. t) == false then
            tfn.turn_join(K, level, t, c)
        end
    end
end

-- How many jobs named tenant t may start now (at most want), and when it
-- may start one again if none: its room under tenant_max_inflight and
-- tenant_rate.
function tfn.tenant_room(K, c, t, want, now)
    local room = want
    if c.tenant_max_inflight > 0 then
        local running = tonumber(rcall('HGET', K .. ':ti', t)) or 0
        room = math.min(room, c.tenant_max_inflight - running)
        if room <= 0 then
            -- A slot freed by an outcome brings it back (tenant_release);
            -- the lease time bounds the wait should that be missed.
            return 0, now + c.lease_ms
        end
    end
    if c.tenant_rate > 0 then
        local rk = K .. ':tr:' .. t
        local used = tonumber(rcall('GET', rk)) or 0
        room = math.min(room, c.tenant_rate - used)
        if room <= 0 then
            return 0, now + math.max(rcall('PTTL', rk), 1)
        end
    end
    if c.tenant_tokens > 0 then
        return ttok.room(K, c, t, room, now) -- tenant_tokens.lua
    end
    return room, nil
end

-- Counts n jobs of named tenant t started: running, and in its rate window.
function tfn.tenant_started(K, c, t, n)
    if c.tenant_max_inflight > 0 then
        rcall('HINCRBY', K .. ':ti', t, itxt(n))
    end
    if c.tenant_rate > 0 then
        local rk = K .. ':tr:' .. t
        if rcall('INCRBY', rk, itxt(n)) == n then
            rcall('PEXPIRE', rk, c.tenant_rate_ms)
        end
    end
end

-- Named tenant t has room again: it rejoins the turns it left when parked
-- at a limit (one ZREM per level), and idle workers are woken.
function tfn.tenant_rejoin(K, c, t)
    for level = 0, #c.priorities - 1 do
        if rcall('ZREM', K .. ':tpark', itxt(level) .. '|' .. t) == 1 then
            tfn.turn_join(K, level, t)
            if rcall('EXISTS', K .. ':paused') == 0 then
                rcall('RPUSH', K .. ':wake', '1')
            end
        end
    end
end

-- A run of named tenant t ended (ack, fail, defer, reclaim): its slot is
-- free, and at its tenant_max_inflight it rejoins the turns it left.
local function tenant_release(K, c, t)
    if c.tenant_max_inflight == 0 then
        return
    end
    local ti = K .. ':ti'
    local left = rcall('HINCRBY', ti, t, '-1')
    if left <= 0 then
        rcall('HDEL', ti, t)
    end
    if left == c.tenant_max_inflight - 1 then
        tfn.tenant_rejoin(K, c, t)
    end
end

-- tenant_release for the job at jk, when it has a tenant (one HGET, with
-- tenant_max_inflight only).
local function tenant_release_job(K, c, jk)
    if c.tenant_max_inflight > 0 then
        local t = rcall('HGET', jk, 'tenant')
        if t then
            tenant_release(K, c, t)
        end
    end
end

-- Before a reserve's choice on a queue that has had tenants: parked
-- tenants whose time has come rejoin their turns (with limits only).
-- Answers true: each level then looks at its turn first (tenant_pop),
-- and a level without one gives its default jobs.
local function tenant_turns(K, c, now)
    tenant_conf(K, c)
    tfn.tenant_seen = 0
    if c.tlimited then
        local pk = K .. ':tpark'
        local due = rcall('ZRANGEBYSCORE', pk, '-inf', now, 'LIMIT', 0, MAX_BATCH)
        if #due > 0 then
            rcall('ZREM', pk, unpack(due))
            for _, m in ipairs(due) do
                local level, t = m:match('^(%d+)|(.*)$')
                tfn.turn_join(K, tonumber(level), t)
            end
        end
    end
    return true
end

-- The reserve's choice of jobs at level (0-based) when the queue has
-- turns: up to want job ids, round robin between the tenants in the turn,
-- weight W serving W jobs per turn; a tenant at its limit is parked; a
-- level without a turn (no named tenant waits there) gives its default
-- jobs. Fewer than want only when no tenant of the level can give more.
-- first: a tenant tenant_next already took from the head of the turn.
-- Each tenant is taken from the head of the turn (LPOP) and held while
-- it serves; those whose turn is over go to the back in one RPUSH at the
-- end, one whose weighted turn goes on back to the head, one that gave
-- its last job or is parked nowhere. A tenant's list is popped one job
-- beyond what it serves, the extra pushed back: the reply says whether
-- anything is left without an EXISTS. O(1) calls per job: each step takes
-- jobs or takes a tenant out of the turn. s: the queue's service (nil for
-- none), whose bytes_per_token the tenants' token windows estimate with.
local function tenant_pop(K, c, level, want, now, s, first)
    local lt = itxt(level)
    local tq = c.tturns[level + 1]
    local out, steps = {}, 0
    local served, cur = 0, nil
    local back, bi, dry = {}, 1, false
    if c.tweighted then
        local cr = rcall('HGET', K .. ':tcr', lt)
        if cr then
            served, cur = cr:match('^(%d+) (.*)$')
            served = tonumber(served)
        end
    end
    while #out < want do
        local t = first
        first = nil
        if t == nil and not dry then
            t = rcall('LPOP', tq)
            dry = not t -- the rest of the turn is held in back
        end
        if not t and bi <= #back then -- those sent to the back come round again
            t, bi = back[bi], bi + 1
        end
        if not t then
            if steps == 0 then -- no named tenant waits here: the default jobs, as before
                return rcall('LPOP', c.qkeys[level + 1], want) or {}
            end
            break
        end
        steps = steps + 1
        local w = c.tweighted and c.tweights[t] or 1
        local again = t == cur
        if not again then
            served, cur = 0, t
        end
        local k, untl = math.min(want - #out, math.max(w - served, 1)), nil
        if again and not c.tweighted then
            k = want - #out -- back at once: alone in the turn, it takes the rest
        end
        if t ~= '' and c.tlimited then
            k, untl = tfn.tenant_room(K, c, t, k, now)
        end
        local lk = tenant_list(K, level, t, c)
        if k <= 0 then
            -- Out of the turn (it is held): parked until untl.
            if untl and rcall('EXISTS', lk) == 1 then
                rcall('ZADD', K .. ':tpark', itxt(untl), lt .. '|' .. t)
            end
            cur = nil
        else
            local ids = rcall('LPOP', lk, itxt(k + 1)) or {}
            local more = #ids > k
            if more then
                rcall('LPUSH', lk, table.remove(ids))
            end
            for _, id in ipairs(ids) do
                out[#out + 1] = id
            end
            if t ~= '' and #ids > 0 then
                tfn.tenant_seen = tfn.waiting_add(K, level, -#ids, c)
                tfn.tenant_started(K, c, t, #ids)
                if c.tenant_tokens > 0 then
                    ttok.count(K, c, t, ids, s, now) -- tenant_tokens.lua
                end
            end
            served = served + #ids
            -- A tenant is in the turn exactly while it has jobs here (else
            -- a new job would make it join twice): the one that gave its
            -- last job leaves at once.
            if not more then
                cur = nil
            elseif not c.tweighted or served >= w then -- its turn is over: to the back
                back[#back + 1] = t
                if c.tweighted then
                    cur = nil -- (unweighted, met again at once: alone, it takes the rest)
                end
            else
                first = t -- its weighted turn goes on: the head again
            end
        end
    end
    if first then
        rcall('LPUSH', tq, first)
    end
    if bi <= #back then
        rcall('RPUSH', tq, unpack(back, bi))
    end
    if c.tweighted then
        local tcr = K .. ':tcr'
        if cur ~= nil and served > 0 then
            rcall('HSET', tcr, lt, served .. ' ' .. cur)
        else
            rcall('HDEL', tcr, lt)
        end
    end
    -- A turn left with the default tenant alone goes on until its jobs are
    -- gone: checking for it would cost every tenant that leaves a call.
    return out
end

-- tenant_pop of one job without weights and limits: t, from the head of the turn,
-- gives its first job and goes to the back if it has more (no loop, no tables).
function tfn.pop_one(K, c, level, t, now, s)
    local lk = tenant_list(K, level, t, c)
    local ids = rcall('LPOP', lk, '2')
    if not ids then -- the default tenant, whose jobs are gone: the next in turn
        return tenant_pop(K, c, level, 1, now, s)
    end
    if ids[2] then
        rcall('LPUSH', lk, ids[2])
        rcall('RPUSH', c.tturns[level + 1], t)
        ids[2] = nil
    end
    if t ~= '' then -- waiting_add, inline
        local left = rcall('HINCRBY', c.tnk, c.tnf[level + 1], '-1')
        if left <= 0 then
            rcall('HDEL', c.tnk, c.tnf[level + 1])
        end
        tfn.tenant_seen = left
    end
    return ids
end

-- The strict order's choice (jobs.lua, reserve_jobs) from level on
-- (1-based): each level's turn, then its default list, in order (one LPOP
-- each), finds the first level with a tenant in its turn (which
-- tenant_pop serves from) or, where no turn is, default jobs. A level's
-- default list is reached only when its turn is empty, as then its
-- default jobs are not in one. From the top, one EXISTS first skips the
-- levels above the default one when they are empty (jobs wait mostly at
-- the default level). -> the job ids (nil when every level from level on
-- is empty) and the level (1-based) they come from. One LMPOP over all
-- those keys costs Redis about what four LPOPs do, found or not
-- (docs/benchmarks.md, "Tenants: the reserve's level without LMPOP").
local function tenant_next(K, c, level, want, now, s)
    if level == 1 and c.tabove[1] and rcall('EXISTS', unpack(c.tabove)) == 0 then
        level = #c.tabove / 2 + 1
    end
    for at = level, #c.qkeys do
        local t = rcall('LPOP', c.tturns[at])
        if t and want == 1 and not c.tweighted and not c.tlimited then
            return tfn.pop_one(K, c, at - 1, t, now, s), at
        elseif t then
            return tenant_pop(K, c, at - 1, want, now, s, t), at
        end
        local ids = rcall('LPOP', c.qkeys[at], itxt(want))
        if ids then
            return ids, at
        end
    end
    return nil, #c.qkeys
end

-- For the end of a reserve with turns (jobs.lua): 1 when its last pop
-- left named tenants' jobs waiting at the level and no limit can have
-- parked them (so they are in the turn and something can be served), else
-- nil: then the caller looks (EXISTS of the lists and turns).
local function tenant_left(c)
    if tfn.tenant_seen > 0 and not c.tlimited then
        return 1
    end
    return nil
end

-- Jobs of named tenants ready to run at level (0-based; parked ones too).
local function tenant_waiting(K, level)
    return tonumber(rcall('HGET', K .. ':tn', '#' .. itxt(level))) or 0
end

-- Tenant t, whose list at level was just emptied by a cancel, leaves the
-- level's turn, its park and the weighted turn it was serving.
function tfn.tenant_leave(K, level, t)
    local lt = itxt(level)
    rcall('LREM', K .. ':tq:' .. lt, 1, t)
    rcall('ZREM', K .. ':tpark', lt .. '|' .. t)
    local cr = rcall('HGET', K .. ':tcr', lt)
    if cr and cr:match('^%d+ (.*)$') == t then
        rcall('HDEL', K .. ':tcr', lt)
    end
end

-- A queued job leaves its list (cancel): the tenant leaves the turn and
-- its park when it has nothing more at the level.
local function tenant_unlink(K, jk, id)
    local j = rcall('HMGET', jk, 'prio', 'tenant')
    local level, t = tonumber(j[1]), j[2] or ''
    local lk = tenant_list(K, level, t)
    if rcall('LREM', lk, 1, id) == 0 then
        return
    end
    if t ~= '' then
        tfn.waiting_add(K, level, -1)
    end
    if rcall('EXISTS', lk) == 0 then
        tfn.tenant_leave(K, level, t)
    end
end

-- Every parked tenant back in its turn (limits removed by a redeclare).
function tfn.unpark_all(K)
    local pk = K .. ':tpark'
    for _, m in ipairs(rcall('ZRANGEBYSCORE', pk, '-inf', '+inf')) do
        local level, t = m:match('^(%d+)|(.*)$')
        tfn.turn_join(K, tonumber(level), t)
    end
    rcall('DEL', pk)
end

-- corral_declare moves the jobs of a level that no longer exists (from) to
-- the lowest one (to, named prio): the named tenants' lists too.
local function tenant_move_level(K, from, to, prio)
    local tenants = {}
    for _, t in ipairs(rcall('LRANGE', K .. ':tq:' .. from, 0, -1)) do
        tenants[#tenants + 1] = t
    end
    local pk = K .. ':tpark'
    for _, m in ipairs(rcall('ZRANGEBYSCORE', pk, '-inf', '+inf')) do
        local level, t = m:match('^(%d+)|(.*)$')
        if tonumber(level) == from then
            rcall('ZREM', pk, m)
            tenants[#tenants + 1] = t
        end
    end
    for _, t in ipairs(tenants) do
        if t ~= '' then
            local lk = tenant_list(K, from, t)
            local ids = rcall('LRANGE', lk, 0, -1)
            rcall('DEL', lk)
            if #ids > 0 then
                for _, id in ipairs(ids) do
                    rcall('HSET', job_key(K, id), 'prio', to, 'priority', prio)
                end
                tfn.waiting_add(K, from, -#ids)
                tenant_ready(K, to, t, ids, false)
            end
        end
    end
    rcall('DEL', K .. ':tq:' .. from)
    rcall('HDEL', K .. ':tcr', tostring(from))
end

-- corral_declare's tenant settings (s: its settings object): checked and
-- appended to fields (K:conf, in CONF_FIELDS' order). The weights of
-- tenant_weights replace those tenants' weights; other tenants keep theirs
-- (set with corral_tenant_weight). Without limits, parked tenants rejoin
-- and running jobs are no longer counted.
local function tenant_declare(K, q, s, fields)
    local rate, rate_ms = 0, 1000
    if s.tenant_rate ~= nil then
        rate = int_arg('BADSETTING', s.tenant_rate, 'tenant_rate', 0, 1000000000)
        rate_ms = int_arg('BADSETTING', s.tenant_rate_ms or 1000, 'tenant_rate_ms', 1, 2 ^ 40)
    end
    local mi = int_arg('BADSETTING', s.tenant_max_inflight or 0, 'tenant_max_inflight', 0, 1000000)
    local ws = tfn.tenant_weights_parse(rcall('HGET', K .. ':conf', 'tenant_weights'))
    if s.tenant_weights ~= nil then
        if type(s.tenant_weights) ~= 'table' or #s.tenant_weights > 0 then
            fail('BADSETTING', 'queue "%s": tenant_weights must be an object of weights', q)
        end
        for t, w in pairs(s.tenant_weights) do
            if not valid_tenant(t) then
                fail('BADSETTING', 'queue "%s": bad tenant name "%s" in tenant_weights', q,
                     shown(t):sub(1, 64))
            end
            ws[t] = int_arg('BADSETTING', w, 'tenant weight', 1, 1000)
        end
    end
    for _, v in ipairs({'tenant_max_inflight', mi, 'tenant_rate', rate,
                        'tenant_rate_ms', rate_ms}) do
        fields[#fields + 1] = v
    end
    local tokens = ttok.declare(s, fields) -- tenant_tokens.lua
    fields[#fields + 1] = 'tenant_weights'
    fields[#fields + 1] = tfn.tenant_weights_text(ws)
    if mi == 0 then
        rcall('DEL', K .. ':ti') -- counted with tenant_max_inflight only
    end
    if mi == 0 and rate == 0 and tokens == 0 then
        tfn.unpark_all(K)
    end
end

-- corral_tenant_weight: KEYS[1] queue; ARGV[1] tenant; ARGV[2] weight
-- (1-1000) -> "OK". The tenant serves that many jobs per turn from now on
-- (a weight of 1 is the default and is not stored). Kept in K:conf (its
-- field tenant_weights and the packed settings) until a corral_declare
-- names the tenant in its tenant_weights.
local function corral_tenant_weight(keys, args)
    local K, q = queue_key(keys[1])
    load_conf(K, q)
    local t = args[1]
    if not valid_tenant(t) then
        fail('BADTENANT', 'queue "%s": bad tenant "%s": use 1-64 bytes of A-Z a-z 0-9 _ . : @ -',
             q, shown(t):sub(1, 80))
    end
    local w = int_arg('BADARG', args[2], 'weight', 1, 1000)
    local v = rcall('HMGET', K .. ':conf', unpack(CONF_FIELDS))
    local at = 18 -- tenant_weights' place in CONF_FIELDS (prelude.lua's load_conf reads v[18])
    local ws = tfn.tenant_weights_parse(v[at])
    ws[t] = w
    v[at] = tfn.tenant_weights_text(ws)
    for i = 1, #CONF_FIELDS do
        v[i] = v[i] or ''
    end
    rcall('HSET', K .. ':conf', 'tenant_weights', v[at], 'packed', conf_packed(v))
    return 'OK'
end
