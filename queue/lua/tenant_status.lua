-- tenant_status.lua: what status shows of a queue's tenants (tenants.lua
-- keeps them): corral_tenants, the tenants with the most waiting, and the
-- oldest wait of a level for corral_stats. Read only, O(tenants) for
-- status, never on the hot path. Keys, derived from the queue key K: the
-- turns K:tq:<level>, the tenants' lists K:t:<level>:<tenant>, the parked
-- K:tpark, the running K:active and the job records K:job:<id>.

tfn.TENANT_SCAN = 100 -- tenants whose oldest job corral_stats looks at per level

-- corral_tenants: KEYS[1] queue; ARGV[1] optional limit (0 = all, default
-- 10) -> a JSON object {tenants: [...], count, waiting, inflight}: the named
-- tenants with jobs waiting or running, most waiting first (ties by name),
-- at most limit of them, each {tenant, waiting, inflight, oldest_wait_ms,
-- limited, weight}; count, waiting and inflight sum all of them. Reads
-- every turn, the parked tenants and the running jobs: O(tenants + running),
-- for status, not for the hot path.
local function corral_tenants(keys, args)
    local K, q = queue_key(keys[1])
    local c = tenant_conf(K, load_conf(K, q))
    local limit = int_arg('BADARG', args[1] or 10, 'limit', 0, 100000000)
    local now = now_ms()
    local by, names = {}, {}
    local function entry(t)
        if by[t] == nil then
            by[t] = {tenant = t, waiting = 0, inflight = 0, limited = false, at = {}}
            names[#names + 1] = t
        end
        return by[t]
    end
    local function count(level, t)
        local e = entry(t)
        if not e.at[level] then
            e.at[level] = true
            e.waiting = e.waiting + rcall('LLEN', tenant_list(K, level, t))
        end
        return e
    end
    for level = 0, #c.priorities - 1 do
        for _, t in ipairs(rcall('LRANGE', c.tturns[level + 1], 0, -1)) do
            if t ~= '' then
                count(level, t)
            end
        end
    end
    for _, m in ipairs(rcall('ZRANGEBYSCORE', K .. ':tpark', '-inf', '+inf')) do
        local level, t = m:match('^(%d+)|(.*)$')
        count(tonumber(level), t).limited = true
    end
    for _, id in ipairs(rcall('ZRANGEBYSCORE', c.active, '-inf', '+inf')) do
        local t = rcall('HGET', job_key(K, id), 'tenant')
        if t then
            entry(t).inflight = entry(t).inflight + 1
        end
    end
    local live, total_w, total_i = {}, 0, 0
    for _, t in ipairs(names) do
        local e = by[t]
        if e.waiting > 0 or e.inflight > 0 then -- a turn may hold a drained tenant a while
            live[#live + 1] = t
            total_w, total_i = total_w + e.waiting, total_i + e.inflight
        end
    end
    table.sort(live, function(a, b)
        if by[a].waiting ~= by[b].waiting then
            return by[a].waiting > by[b].waiting
        end
        return a < b
    end)
    local out = {}
    for i, t in ipairs(live) do
        if limit > 0 and i > limit then
            break
        end
        local e = by[t]
        local oldest = nil
        for level, _ in pairs(e.at) do
            local head = rcall('LINDEX', tenant_list(K, level, t), 0)
            local at = head and tonumber(rcall('HGET', job_key(K, head), 'queued_ms'))
            if at and (oldest == nil or at < oldest) then
                oldest = at
            end
        end
        out[#out + 1] = {tenant = t, waiting = e.waiting, inflight = e.inflight,
                         oldest_wait_ms = oldest and (now - oldest) or 0,
                         limited = e.limited and e.waiting > 0, weight = c.tweights[t] or 1}
    end
    local r = {count = #live, waiting = total_w, inflight = total_i, time_ms = now}
    if #out > 0 then
        r.tenants = out
        return cjson.encode(r)
    end
    -- cjson encodes an empty table as an object
    return cjson.encode(r):sub(1, -2) .. ',"tenants":[]}'
end

-- For corral_stats: the queued_ms of the oldest job at the heads of the
-- first TENANT_SCAN tenants in the turn of level (nil when none).
local function tenant_oldest(K, level)
    local oldest = nil
    for _, t in ipairs(rcall('LRANGE', K .. ':tq:' .. level, 0, tfn.TENANT_SCAN - 1)) do
        if t ~= '' then
            local head = rcall('LINDEX', tenant_list(K, level, t), 0)
            local at = head and tonumber(rcall('HGET', job_key(K, head), 'queued_ms'))
            if at and (oldest == nil or at < oldest) then
                oldest = at
            end
        end
    end
    return oldest
end
