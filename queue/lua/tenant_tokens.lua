-- tenant_tokens.lua: a token window per named tenant, fleet-wide
-- (`[queue Q] tenant_tokens = N/period`; docs/protocol.md, "Tenants", and
-- docs/tokens.md). The reserve adds the estimate of each job of the tenant
-- it takes to the tenant's window; a tenant whose window has reached N
-- steps out of the turn (parked, tenants.lua) until the window turns.
-- Windows are fixed and aligned (window i covers [i*period, (i+1)*period)),
-- as the service's spend budget. Keys, derived from the queue key K:
--   K:tt:<tenant>  string  the tokens counted in the tenant's current
--                          window (expires when the window turns)
-- A job record gets tok_tenant, "<run> <window> <estimate>": what its run
-- added to which window, for corral_settle. Only queues with the setting
-- run any of this (c.tenant_tokens > 0); the functions fill the table ttok
-- that tenants.lua declares.

local TENANT_TOKENS_MAX = 1000000000000

local function ttok_key(K, t)
    return K .. ':tt:' .. t
end

-- The window now falls in, and when it ends (ms).
local function ttok_window(c, now)
    local idx = math.floor(now / c.tenant_tokens_ms)
    return idx, (idx + 1) * c.tenant_tokens_ms
end

-- Makes the window's key tk, just made at now, expire with the window:
-- Redis keeps a key through its expiry's millisecond, so the key lives
-- through the window's last one (ends - 1) and is gone at ends. A key made
-- in that last millisecond keeps 1 ms more (a TTL of 0 would delete it).
local function ttok_expire(c, tk, now)
    local _, ends = ttok_window(c, now)
    rcall('PEXPIRE', tk, math.max(ends - now - 1, 1))
end

-- corral_declare's settings tenant_tokens (0 = none) and tenant_tokens_ms
-- (the window, default 60000): checked, appended to fields.
ttok.declare = function(s, fields)
    local n, ms = 0, 60000
    if s.tenant_tokens ~= nil then
        n = int_arg('BADSETTING', s.tenant_tokens, 'tenant_tokens', 0, TENANT_TOKENS_MAX)
        ms = int_arg('BADSETTING', s.tenant_tokens_ms or 60000, 'tenant_tokens_ms', 1, 86400000)
    end
    fields[#fields + 1] = 'tenant_tokens'
    fields[#fields + 1] = n
    fields[#fields + 1] = 'tenant_tokens_ms'
    fields[#fields + 1] = ms
    return n
end

-- tenant_room's part: named tenant t may take one job when its window is
-- below N (one per step, so that each step sees the window the last one
-- left), else none until the window turns.
ttok.room = function(K, c, t, room, now)
    local used = tonumber(rcall('GET', ttok_key(K, t))) or 0
    if used >= c.tenant_tokens then
        local _, ends = ttok_window(c, now)
        return 0, ends + 1 -- past a key made in the window's last millisecond
    end
    return math.min(room, 1), nil
end

-- Counts the estimates of ids (jobs of named tenant t the reserve just
-- took; s: the queue's service or nil) in the tenant's window, and notes
-- on each job what its coming run added. The estimate is tokens.lua's.
ttok.count = function(K, c, t, ids, s, now)
    local bpt = {bytes_per_token = s and s.bytes_per_token or SVC_NUM.bytes_per_token}
    local idx = ttok_window(c, now)
    local sum = 0
    for _, id in ipairs(ids) do
        local jk = job_key(K, id)
        local j = rcall('HMGET', jk, 'run', 'tokens', 'payload')
        if j[1] then
            local est_in, est_out = tok_estimate(bpt, j[3] or '', tonumber(j[2]))
            local est = est_in + est_out
            sum = sum + est
            rcall('HSET', jk, 'tok_tenant',
                       string.format('%d %d %d', tonumber(j[1]) + 1, idx, est))
        end
    end
    if sum > 0 then
        local tk = ttok_key(K, t)
        if rcall('INCRBY', tk, sum) == sum then
            ttok_expire(c, tk, now)
        end
    end
end

-- Corrects named tenant t's window by delta when the grant noted in tt
-- ("<run> <window> <estimate>") is of run (nil: any) and its window is
-- still the current one. A window that falls below N brings the tenant
-- back into its turns at once.
local function ttok_adjust(K, c, t, tt, run, real, now)
    local r, idx, est = (tt or ''):match('^(%d+) (%d+) (%d+)$')
    if not r or c.tenant_tokens == 0 or (run and r ~= run) or
        tonumber(idx) ~= ttok_window(c, now) then
        return
    end
    local delta = real - tonumber(est)
    if delta == 0 then
        return
    end
    local tk = ttok_key(K, t)
    local v = rcall('INCRBY', tk, delta)
    if v <= 0 then
        rcall('DEL', tk)
    elseif v == delta then -- the window's key was gone: it ends with the window
        ttok_expire(c, tk, now)
    end
    if v < c.tenant_tokens and v - delta >= c.tenant_tokens then
        tfn.tenant_rejoin(K, c, t)
    end
end

-- corral_settle's part, for the run of the job whose tenant and tok_tenant
-- it read: the tenant's window counts the run's real tokens (real) in
-- place of its estimate.
ttok.settle = function(K, c, t, tt, run, real, now)
    if t and tt then
        ttok_adjust(K, c, t, tt, run, real, now)
    end
end

-- A job the reserve took but the service's budgets held back (jobs.lua's
-- unpop_held): its estimate leaves the tenant's window.
ttok.unpop = function(K, c, jk)
    local j = rcall('HMGET', jk, 'tenant', 'tok_tenant')
    if j[1] and j[2] then
        ttok_adjust(K, c, j[1], j[2], nil, 0, now_ms())
    end
end
