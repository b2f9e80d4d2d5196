#!lua name=corral
-- corral's Redis Function library: every state change of a job is one call
-- here, so it is atomic and the same for corrald, corral-worker, corralctl and
-- application services in any language. Embedded into the programs at build
-- time and loaded with FUNCTION LOAD REPLACE when missing or older.
--
-- Every function takes one key: the queue, either bare ("prompts", default
-- prefix "corral") or as "<prefix>:{<queue>}". All keys of a queue share the
-- hash tag {<queue>}, so one queue lives in one Redis Cluster slot. Keys of a
-- queue K = "<prefix>:{<queue>}" (docs/protocol.md lists them too):
--   K:conf            hash   queue settings, written by corral_declare
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
--   K:st:<minute>     hash   per-minute counters and processing-time histogram
-- Outside the queue's slot (single-Redis deployments only): <prefix>:queues,
-- the set of declared queue names, written by corral_declare alone.

local LIB_VERSION = 4

local MAX_BATCH = 1000
local STATS_TTL_S = 7200
local WAKE_CAP = 1024
-- Upper bounds (ms) of the processing-time histogram buckets; the last is open.
local HIST = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 30000,
              60000, 120000, 300000, 600000}

-- The code word that begins each error reply of the library, so callers
-- act on a word rather than on prose (docs/protocol.md lists them; the C
-- side maps them in queue/codes.c). A word names what the caller can do
-- differently; a new kind of refusal that calls for a different reaction
-- gets a new word.
local CODES = {
    BADARG = true,     -- a call's arguments are malformed (a caller's bug)
    BADNAME = true,    -- the key names no valid queue or service
    NOQUEUE = true,    -- the queue was never declared
    NOSERVICE = true,  -- the service was never declared
    BADPAYLOAD = true, -- the payload is missing or not JSON
    TOOBIG = true,     -- the payload is over the queue's max_payload
    BADOPTION = true,  -- an enqueue option is unknown or its value invalid
    BADSETTING = true, -- a queue's or service's settings are invalid
    NOJOB = true,      -- no such job in the queue
    RUNNING = true,    -- the job is running and cannot be cancelled
    FINISHED = true,   -- the job already ended (done or cancelled)
    NOTDEAD = true,    -- dead_retry of a job that is not dead
}

-- Raises an error reply "<CODE> <message>" for bad input. Every function
-- validates before it writes, so a refused call changes nothing.
local function fail(code, fmt, ...)
    if not CODES[code] then
        error('corral: unknown error code ' .. tostring(code), 0)
    end
    error({corral = code .. ' ' .. string.format(fmt, ...)}, 0)
end

-- Turns fail()'s errors into plain error replies (without the script
-- location Redis appends to raised errors); anything else is re-raised.
local function api(f)
    return function(keys, args)
        local ok, r = pcall(f, keys, args)
        if ok then
            return r
        end
        if type(r) == 'table' and r.corral then
            return redis.error_reply(r.corral)
        end
        error(r, 0)
    end
end

local function now_ms()
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Microseconds, for the latency fields (created_us, started_us) that
-- benchmarks and operators use to see sub-millisecond pick-up times.
local function now_us()
    local t = redis.call('TIME')
    return t[1] .. string.format('%06d', tonumber(t[2]))
end

-- Strict JSON: Redis's cjson accepts NaN, Infinity and hex numbers unless
-- told not to. Set on every decode: the setting is global to the Lua VM
-- that all function libraries share.
local function json_decode(text)
    cjson.decode_invalid_numbers(false)
    return cjson.decode(text)
end

-- Text that is not UTF-8 is refused by libcorral and corralctl, and a
-- worker ends a job whose payload is not JSON text dead before any call
-- (both in C, at a byte a nanosecond); Redis itself only checks what is
-- cheap: checking UTF-8 in Lua costs some 0.3 us per non-ASCII character,
-- ten times an enqueue for a prompt in Chinese. What Redis answers must
-- still be JSON text, so a record's text from outside is cleaned on output.

-- Valid UTF-8 (RFC 3629: shortest form, no surrogates, at most U+10FFFF):
-- the pattern of the sequence each lead byte starts.
local UTF8_SEQ = {}
for c = 0xC2, 0xF4 do
    UTF8_SEQ[c] = (c <= 0xDF and '^[\194-\223][\128-\191]()') or
                      (c == 0xE0 and '^\224[\160-\191][\128-\191]()') or
                      (c == 0xED and '^\237[\128-\159][\128-\191]()') or
                      (c <= 0xEF and '^[\225-\239][\128-\191][\128-\191]()') or
                      (c == 0xF0 and '^\240[\144-\191][\128-\191][\128-\191]()') or
                      (c == 0xF4 and '^\244[\128-\143][\128-\191][\128-\191]()') or
                      '^[\241-\243][\128-\191][\128-\191][\128-\191]()'
end

local function utf8_ok(s)
    local i, n = 1, #s
    while true do
        i = s:match('^[%z\1-\127]*()', i) -- past the ASCII run
        if i > n then
            return true
        end
        local p = UTF8_SEQ[s:byte(i)]
        i = p and s:match(p, i)
        if i == nil then
            return false
        end
    end
end

-- Replaces each byte that is not part of valid UTF-8 with U+FFFD, so that a
-- record holding bytes from outside (a service's answer) is still JSON text.
local function utf8_clean(s)
    if utf8_ok(s) then
        return s
    end
    local out, i, n = {}, 1, #s
    while i <= n do
        local j = s:match('^[%z\1-\127]*()', i)
        out[#out + 1] = s:sub(i, j - 1)
        if j > n then
            break
        end
        local p = UTF8_SEQ[s:byte(j)]
        local k = p and s:match(p, j) -- past a valid sequence, or nil
        out[#out + 1] = k and s:sub(j, k - 1) or '\239\191\189'
        i = k or j + 1
    end
    return table.concat(out)
end

-- A value as the caller wrote it, for error messages.
local function shown(v)
    if v == cjson.null then
        return 'null'
    elseif type(v) == 'table' then
        local ok, text = pcall(cjson.encode, v)
        return ok and text or 'a list'
    end
    return tostring(v)
end

local function valid_name(s)
    return type(s) == 'string' and #s >= 1 and #s <= 64 and not s:find('[^%w_%.:%-]')
end

-- Returns K and the queue name from the one key argument.
local function queue_key(key)
    if key == nil then
        fail('BADARG', 'expected one key: the queue name')
    end
    local prefix, q = key:match('^(.-):{(.*)}$')
    if prefix == nil then
        prefix, q = 'corral', key
    end
    if not valid_name(q) then
        fail('BADNAME', 'bad queue name "%s": use 1-64 characters of A-Z a-z 0-9 _ . : -', q:sub(1, 80))
    end
    if not valid_name(prefix) then
        fail('BADNAME', 'bad key prefix "%s"', prefix:sub(1, 80))
    end
    return prefix .. ':{' .. q .. '}', q, prefix
end

local function split(s)
    local out = {}
    if s == nil or s == '' then
        return out
    end
    for item in string.gmatch(s, '[^,]+') do
        out[#out + 1] = item
    end
    return out
end

local CONF_FIELDS = {'priorities', 'order', 'weights', 'max_attempts', 'backoff_base_ms',
                     'backoff_cap_ms', 'timeout_ms', 'lease_ms', 'result_ttl_ms', 'max_payload',
                     'max_result', 'service'}

local function load_conf(K, q)
    local v = redis.call('HMGET', K .. ':conf', unpack(CONF_FIELDS))
    if not v[1] then
        fail('NOQUEUE', 'unknown queue "%s": no corrald or corralctl has declared it (corral_declare)', q)
    end
    local c = {priorities = split(v[1]), order = v[2], weights = {}}
    for i, w in ipairs(split(v[3])) do
        c.weights[i] = tonumber(w)
    end
    c.max_attempts = tonumber(v[4])
    c.backoff_base_ms = tonumber(v[5])
    c.backoff_cap_ms = tonumber(v[6])
    c.timeout_ms = tonumber(v[7])
    c.lease_ms = tonumber(v[8])
    c.result_ttl_ms = tonumber(v[9])
    c.max_payload = tonumber(v[10])
    c.max_result = tonumber(v[11])
    c.service = v[12] or ''
    return c
end

local function default_level(c)
    return math.floor((#c.priorities - 1) / 2)
end

local function job_key(K, id)
    return K .. ':job:' .. id
end

-- Per-minute statistics. Each counter's first increment in a bucket sets the
-- TTL, so no call pays for an EXPIRE on the hot path more than a few times a
-- minute.
local function stat(K, now, field, n)
    local bk = K .. ':st:' .. math.floor(now / 60000)
    if redis.call('HINCRBY', bk, field, n or 1) == (n or 1) then
        redis.call('EXPIRE', bk, STATS_TTL_S)
    end
    return bk
end

local function stat_proc(K, now, field, started)
    local bk = stat(K, now, field)
    local ms = now - (tonumber(started) or now)
    if ms < 0 then
        ms = 0
    end
    local b = #HIST
    for i, hi in ipairs(HIST) do
        if ms <= hi then
            b = i - 1
            break
        end
    end
    redis.call('HINCRBY', bk, 'h' .. b, 1)
    redis.call('HINCRBY', bk, 'ps', ms)
    redis.call('HINCRBY', bk, 'pn', 1)
end

-- Pushes up to n markers for idle workers, unless the queue is paused
-- (paused queues hand out nothing, so waking anyone would be for nothing).
local function wake(K, n)
    if n <= 0 or redis.call('EXISTS', K .. ':paused') == 1 then
        return
    end
    local wk = K .. ':wake'
    if redis.call('LLEN', wk) < WAKE_CAP then
        local marks = {}
        for i = 1, math.min(n, 64) do
            marks[i] = '1'
        end
        redis.call('RPUSH', wk, unpack(marks))
    end
end

-- A job's priority level, clamped to the queue's current levels (a
-- redeclare may have removed the job's level while it was scheduled or dead).
local function level_of(c, jk)
    local level = tonumber(redis.call('HGET', jk, 'prio')) or default_level(c)
    if level > #c.priorities - 1 then
        level = #c.priorities - 1
        redis.call('HSET', jk, 'prio', level, 'priority', c.priorities[level + 1])
    end
    return level
end

local function make_ready(K, id, level, front)
    redis.call(front and 'LPUSH' or 'RPUSH', K .. ':q:' .. level, id)
end

-- Moves a job to a final state and publishes it to awaiters.
local function finish(K, c, id, jk, state, now, fields, keep)
    redis.call('HSET', jk, 'state', state, 'finished_ms', now, unpack(fields))
    local fk = K .. ':fin:' .. id
    redis.call('DEL', fk)
    redis.call('RPUSH', fk, state)
    if not keep then
        local ttl = c.result_ttl_ms
        redis.call('PEXPIRE', jk, ttl)
        redis.call('PEXPIRE', fk, ttl)
        local uk = redis.call('HGET', jk, 'unique_key')
        if uk then
            redis.call('PEXPIRE', K .. ':uniq:' .. uk, ttl)
        end
    end
end

local function to_dead(K, c, id, jk, now, err)
    redis.call('LPUSH', K .. ':dead', id)
    finish(K, c, id, jk, 'dead', now, {'error', err}, true)
    stat(K, now, 'dead')
end

-- Removes a job id from whichever container its state says it is in.
local function unlink(K, jk, id, state)
    if state == 'queued' then
        local level = redis.call('HGET', jk, 'prio')
        redis.call('LREM', K .. ':q:' .. level, 1, id)
    elseif state == 'scheduled' then
        redis.call('ZREM', K .. ':sched', id)
    elseif state == 'active' then
        redis.call('ZREM', K .. ':active', id)
    elseif state == 'dead' then
        redis.call('LREM', K .. ':dead', 1, id)
    end
end

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
local function run_status(jk, run, worker)
    local j = redis.call('HMGET', jk, 'state', 'run', 'worker', 'reclaimed')
    if not j[1] or run == '0' or j[2] ~= run or j[3] ~= worker then
        return 'STALE'
    end
    if j[1] == 'active' then
        return 'active'
    end
    return j[4] == run and 'RECLAIMED' or 'STALE'
end

local function promote_due(K, c, now, limit)
    local ids = redis.call('ZRANGEBYSCORE', K .. ':sched', '-inf', now, 'LIMIT', 0, limit)
    if #ids == 0 then
        return 0
    end
    redis.call('ZREM', K .. ':sched', unpack(ids))
    for _, id in ipairs(ids) do
        local jk = job_key(K, id)
        if redis.call('EXISTS', jk) == 1 then
            redis.call('HSET', jk, 'state', 'queued', 'queued_ms', now)
            make_ready(K, id, level_of(c, jk), false)
        end
    end
    wake(K, #ids)
    return #ids
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

-- An integer argument, option or setting within [lo, hi], or a refusal
-- with the code of what it is (BADARG, BADOPTION, BADSETTING).
local function int_arg(code, v, what, lo, hi)
    local n = tonumber(v)
    if n == nil or n ~= math.floor(n) or n < lo or n > hi then
        fail(code, '%s must be an integer from %d to %d, got %s', what, lo, hi,
             shown(v):sub(1, 40))
    end
    return n
end

---------------------------------------------------------------------------
-- Services: the circuit breaker, throttle and limits of one AI service,
-- shared by every worker of the fleet. Updated by the calls that reserve,
-- ack, fail and defer a queue's jobs, so the hot path has no extra round
-- trip. Keys of a service S (single-Redis deployments: they live outside
-- the queues' slots; DESIGN.md says where they go under Redis Cluster):
--   <prefix>:svc:S        hash  settings (corral_declare_service) and state:
--     st closed|open|half_open, until (open until, ms), n (trips since the
--     breaker last closed), why (what tripped it), probes (half-open probe
--     permits handed out), okp (probes that succeeded), thr (throttled until,
--     ms), thr_why, the window: per-bucket counts cI fI sI (calls, failures,
--     slow calls), bh (newest bucket index), bad (failures + slow calls
--     recorded since the window was last summed: 0 means none can be in it),
--     slp (1 while some worker may be waiting), and i:<host> (calls in
--     flight on a host)
--   <prefix>:svc:S:rl     zset  calls granted within the last rate period
--   <prefix>:svc:S:sl     hash  host -> workers waiting for the service
--   <prefix>:svc:S:held   set   "<K>|<id>" of jobs deferred until the breaker
--                               may close (a reset makes them due at once)
--   <prefix>:svc:S:wake:<host> list  markers that wake those workers
--   <prefix>:services     set   every declared service name

local NB = 10 -- buckets per breaker window: it slides in tenths
local SVC_FIELDS = {'win', 'minc', 'fr', 'slow', 'sr', 'of', 'om', 'hc', 'rn', 'rp', 'st',
                    'until', 'n', 'why', 'probes', 'okp', 'thr', 'thr_why', 'bh', 'bad', 'slp'}
local SVC_NUM = {win = 60000, minc = 20, fr = 50, slow = 30000, sr = 80, of = 30000,
                 om = 300000, hc = 3, rn = 0, rp = 60000, ['until'] = 0, n = 0, probes = 0,
                 okp = 0, thr = 0, bad = 0, slp = 0}

local function svc_key(prefix, name)
    return prefix .. ':svc:' .. name
end

-- The service's settings and state, or nil when it was never declared (a
-- queue naming an undeclared service runs without a breaker).
local function load_svc(SK, name)
    local v = redis.call('HMGET', SK, unpack(SVC_FIELDS))
    if not v[1] then
        return nil
    end
    local s = {key = SK, name = name}
    for i, f in ipairs(SVC_FIELDS) do
        if SVC_NUM[f] ~= nil then
            s[f] = tonumber(v[i]) or SVC_NUM[f]
        else
            s[f] = v[i]
        end
    end
    s.st = s.st or 'closed'
    s.why = s.why or ''
    s.thr_why = s.thr_why or ''
    s.bh = tonumber(s.bh)
    return s
end

local function svc_bucket(s, now)
    return math.floor(now / math.max(math.floor(s.win / NB), 1))
end

local function bucket_fields(lo, hi)
    local fields = {}
    for j = lo, hi do
        fields[#fields + 1] = 'c' .. j
        fields[#fields + 1] = 'f' .. j
        fields[#fields + 1] = 's' .. j
    end
    return fields
end

-- Moves the newest bucket to idx, deleting the buckets that left the
-- window (once per bucket width, not per call).
local function svc_advance(s, idx)
    if s.bh ~= nil and idx <= s.bh then
        return -- same bucket, or the clock stepped back: keep the newest
    end
    if s.bh ~= nil then
        local lo, hi = s.bh - NB + 1, math.min(s.bh, idx - NB)
        if hi >= lo then
            redis.call('HDEL', s.key, unpack(bucket_fields(lo, hi)))
        end
    end
    s.bh = idx
    redis.call('HSET', s.key, 'bh', idx)
end

-- Sums the window as of now into s.c, s.f, s.s (read-only).
local function svc_sum(s, now)
    s.c, s.f, s.s = 0, 0, 0
    if s.bh == nil then
        return
    end
    local idx = svc_bucket(s, now)
    local lo, hi = idx - NB + 1, math.min(idx, s.bh)
    if hi < lo then
        return
    end
    local v = redis.call('HMGET', s.key, unpack(bucket_fields(lo, hi)))
    for k = 1, #v, 3 do
        s.c = s.c + (tonumber(v[k]) or 0)
        s.f = s.f + (tonumber(v[k + 1]) or 0)
        s.s = s.s + (tonumber(v[k + 2]) or 0)
    end
end

local function svc_clear_window(s)
    if s.bh ~= nil then
        redis.call('HDEL', s.key, 'bh', unpack(bucket_fields(s.bh - NB + 1, s.bh)))
    end
    s.bh, s.c, s.f, s.s, s.bad = nil, 0, 0, 0, 0
    redis.call('HSET', s.key, 'bad', 0)
end

-- Wakes the workers waiting for the service: on one host, or all.
local function svc_wake(s, host)
    if s.slp ~= 1 then
        return -- nobody waits: the common case, one field read with the rest
    end
    local slk = s.key .. ':sl'
    local hosts
    if host then
        local n = redis.call('HGET', slk, host)
        if not n then
            return
        end
        hosts = {host, n}
    else
        hosts = redis.call('HGETALL', slk)
    end
    for i = 1, #hosts, 2 do
        local wk = s.key .. ':wake:' .. hosts[i]
        local marks = {}
        for k = 1, math.min(tonumber(hosts[i + 1]) or 1, 64) do
            marks[k] = '1'
        end
        redis.call('RPUSH', wk, unpack(marks))
        redis.call('PEXPIRE', wk, 60000)
        redis.call('HDEL', slk, hosts[i])
    end
    if host == nil or redis.call('EXISTS', slk) == 0 then
        s.slp = 0
        redis.call('HSET', s.key, 'slp', 0)
    end
end

local function svc_open(s, now, dur, why)
    s.st, s['until'], s.why, s.probes, s.okp = 'open', now + dur, why, 0, 0
    -- The window that tripped it stays visible (tc, tf: calls, failures)
    -- while the breaker is not closed; the window itself starts afresh.
    redis.call('HSET', s.key, 'st', 'open', 'until', s['until'], 'why', why, 'n', s.n,
               'probes', 0, 'okp', 0, 'opened_ms', now, 'tc', s.c or 0, 'tf', s.f or 0)
    svc_clear_window(s)
end

local function svc_close(s, now)
    s.st, s.n, s.probes, s.okp = 'closed', 0, 0, 0
    redis.call('HSET', s.key, 'st', 'closed', 'n', 0, 'probes', 0, 'okp', 0, 'closed_ms', now)
    svc_clear_window(s)
    svc_wake(s, nil)
    redis.call('DEL', s.key .. ':held') -- they are due about now anyway
end

-- Remembers a job that waits for the breaker rather than for a back-off.
local function svc_hold_job(b, K, id)
    redis.call('SADD', b.s.key .. ':held', K .. '|' .. id)
end

local function pct_text(a, b)
    return string.format('%d%%', math.floor(a * 100 / b + 0.5))
end

-- What may be reserved for the service now: the number of calls allowed
-- (at most want) and, when that is fewer than want, until when (ms) and why.
-- Moves an open breaker whose time is up to half-open.
local function svc_gate(s, now, want, host, max_inflight)
    if s.thr > now then
        return 0, s.thr, 'throttled: ' .. s.thr_why
    end
    if s.st == 'open' then
        if now < s['until'] then
            return 0, s['until'], 'breaker open: ' .. s.why
        end
        s.st, s.probes, s.okp = 'half_open', 0, 0
        redis.call('HSET', s.key, 'st', 'half_open', 'probes', 0, 'okp', 0)
    end
    local allowed, upto, why = want, nil, nil
    local function cap(n, t, w)
        if n < allowed then
            allowed, upto, why = math.max(n, 0), t, w
        end
    end
    if s.st == 'half_open' then
        cap(s.hc - s.probes, now + 1000, 'breaker half-open: probe calls in flight')
    end
    if max_inflight > 0 then
        local cur = tonumber(redis.call('HGET', s.key, 'i:' .. host)) or 0
        cap(max_inflight - cur, now + 1000,
            string.format('max_inflight %d reached on host %s', max_inflight, host))
    end
    if s.rn > 0 and allowed > 0 then
        local rk = s.key .. ':rl'
        redis.call('ZREMRANGEBYSCORE', rk, '-inf', now - s.rp)
        local used = redis.call('ZCARD', rk)
        if used + allowed > s.rn then
            local t = now + 1
            local first = redis.call('ZRANGE', rk, 0, 0, 'WITHSCORES')
            if first[2] then
                t = tonumber(first[2]) + s.rp + 1
            end
            cap(s.rn - used, t, string.format('rate %d per %d ms reached', s.rn, s.rp))
        end
    end
    return allowed, upto, why
end

-- Records calls granted by reserve: in-flight count, probes, rate log.
local function svc_granted(s, now, n, host)
    if n == 0 then
        return
    end
    redis.call('HINCRBY', s.key, 'i:' .. host, n)
    if s.st == 'half_open' then
        s.probes = s.probes + n
        redis.call('HSET', s.key, 'probes', s.probes)
    end
    if s.rn > 0 then
        local rk = s.key .. ':rl'
        local seq = redis.call('HINCRBY', s.key, 'rseq', n)
        local entries = {}
        for k = 1, n do
            entries[#entries + 1] = now
            entries[#entries + 1] = tostring(seq - n + k)
        end
        redis.call('ZADD', rk, unpack(entries))
        redis.call('PEXPIRE', rk, s.rp + 1000)
    end
end

-- Collects the outcomes of one ack/fail/defer call for a queue's service
-- and applies them to the breaker once, at the end of the call.
local function svc_batch(K, c, prefix)
    if c.service == '' then
        return nil
    end
    local SK = svc_key(prefix, c.service)
    local s = load_svc(SK, c.service)
    if s == nil then
        return nil
    end
    return {s = s, ok = 0, fail = 0, slow = 0, pok = 0, pfail = 0, prel = 0, hosts = {},
            fail_why = ''}
end

-- A job leaves its lease: its host's call slot and its probe permit (if it
-- held one) are released. Returns the job's started_ms (read anyway), so
-- the caller need not read it again. kind: 'ok', 'fail' (a breaker failure) or nil
-- (the call does not count: throttled, deferred, reclaimed).
local function svc_leave(b, jk, now, kind, why)
    if b == nil then
        return
    end
    local j = redis.call('HMGET', jk, 'state', 'worker', 'probe', 'started_ms')
    if j[1] == 'active' and j[2] then
        local host = j[2]:match('^(.*):[^:]*$') or j[2]
        b.hosts[host] = (b.hosts[host] or 0) + 1
    end
    local probe = j[3] == '1'
    if probe then
        redis.call('HDEL', jk, 'probe')
    end
    if kind == nil then
        if probe then
            b.prel = b.prel + 1
        end
        return j[4]
    end
    local ms = now - (tonumber(j[4]) or now)
    if ms >= b.s.slow then
        b.slow = b.slow + 1
    end
    if kind == 'ok' then
        b.ok = b.ok + 1
        if probe then
            b.pok = b.pok + 1
        end
    else
        b.fail = b.fail + 1
        b.fail_why = why or ''
        if probe then
            b.pfail = b.pfail + 1
        end
    end
    return j[4]
end

local function svc_apply(b, now)
    if b == nil then
        return
    end
    local s = b.s
    for host, n in pairs(b.hosts) do
        redis.call('HINCRBY', s.key, 'i:' .. host, -n)
        svc_wake(s, host)
    end
    if s.st == 'half_open' then
        if b.pfail > 0 then
            s.n = s.n + 1
            local dur = math.min(s.of * 2 ^ math.min(s.n, 40), s.om)
            svc_open(s, now, dur, string.format('probe call failed: %s', b.fail_why:sub(1, 120)))
            return
        end
        s.okp = s.okp + b.pok
        s.probes = math.max(s.probes - b.prel, 0)
        if s.okp >= s.hc then
            svc_close(s, now)
        else
            redis.call('HSET', s.key, 'okp', s.okp, 'probes', s.probes)
            if b.prel > 0 then
                svc_wake(s, nil)
            end
        end
        return
    end
    if s.st ~= 'closed' or b.ok + b.fail == 0 then
        return -- calls that finish after the trip do not count
    end
    local idx = svc_bucket(s, now)
    svc_advance(s, idx)
    redis.call('HINCRBY', s.key, 'c' .. idx, b.ok + b.fail)
    if b.fail > 0 then
        redis.call('HINCRBY', s.key, 'f' .. idx, b.fail)
    end
    if b.slow > 0 then
        redis.call('HINCRBY', s.key, 's' .. idx, b.slow)
    end
    -- Only a window holding failures or slow calls can trip, so a healthy
    -- service costs one HINCRBY per call here: the window is summed only
    -- while "bad" says some may be in it (a success can still be the call
    -- that reaches min_calls with enough failures before it).
    if s.bad + b.fail + b.slow == 0 then
        return
    end
    svc_sum(s, now)
    s.bad = s.f + s.s
    redis.call('HSET', s.key, 'bad', s.bad)
    if s.c >= s.minc then
        local why
        if s.f * 100 >= s.fr * s.c then
            why = string.format('failure rate %s (%d of %d calls in %d ms; last: %s)',
                                pct_text(s.f, s.c), s.f, s.c, s.win, b.fail_why:sub(1, 120))
        elseif s.s * 100 >= s.sr * s.c then
            why = string.format('slow-call rate %s (%d of %d calls over %d ms)',
                                pct_text(s.s, s.c), s.s, s.c, s.slow)
        end
        if why then
            s.n = 0
            svc_open(s, now, s.of, why)
        end
    end
end

-- A 429: the whole service waits until its Retry-After.
local function svc_throttle(b, now, delay, why)
    if b == nil then
        return
    end
    local s = b.s
    if now + delay > s.thr then
        s.thr, s.thr_why = now + delay, why
        redis.call('HSET', s.key, 'thr', s.thr, 'thr_why', why:sub(1, 200))
    end
end

-- A billing or quota error: retrying will not help for a long time.
local function svc_quota(b, now, why)
    if b == nil then
        return 0
    end
    local s = b.s
    if s.st ~= 'open' or s['until'] < now + s.om then
        s.n = s.n + 1
        svc_open(s, now, s.om, 'quota: ' .. why:sub(1, 200))
    end
    return s['until'] - now
end

-- The breaker as status shows it (read-only: rolls the window in memory).
local function svc_view(s, now)
    svc_sum(s, now)
    local st = s.st
    if st == 'open' and now >= s['until'] then
        st = 'half_open'
    end
    local inflight, total = {}, 0
    local h = redis.call('HGETALL', s.key)
    for i = 1, #h, 2 do
        local f = h[i]
        if f:byte(1) == 105 and f:byte(2) == 58 then -- "i:<host>"
            local n = tonumber(h[i + 1]) or 0
            if n > 0 then
                inflight[f:sub(3)] = n
                total = total + n
            end
        end
    end
    local rate_used = 0
    if s.rn > 0 then
        rate_used = redis.call('ZCOUNT', s.key .. ':rl', now - s.rp, '+inf')
    end
    if st ~= 'closed' and s.c == 0 then
        -- Open or half-open: show the window that tripped it.
        local t = redis.call('HMGET', s.key, 'tc', 'tf')
        s.c, s.f = tonumber(t[1]) or 0, tonumber(t[2]) or 0
    end
    local v = {
        service = s.name, state = st, calls = s.c, failures = s.f, slow_calls = s.s,
        failure_rate = s.c > 0 and math.floor(s.f * 1000 / s.c + 0.5) / 1000 or 0,
        slow_rate = s.c > 0 and math.floor(s.s * 1000 / s.c + 0.5) / 1000 or 0,
        open_until_ms = st ~= 'closed' and s['until'] or 0,
        throttled_until_ms = s.thr > now and s.thr or 0,
        reason = st ~= 'closed' and utf8_clean(s.why) or '',
        throttle_reason = s.thr > now and utf8_clean(s.thr_why) or '',
        trips = s.n, probes = s.probes, probe_successes = s.okp, half_open_calls = s.hc,
        min_calls = s.minc, window_ms = s.win, inflight = total, rate_limit = s.rn,
        rate_period_ms = s.rp, rate_used = rate_used, time_ms = now
    }
    if total > 0 then
        v.inflight_by_host = inflight
    end
    local held
    if v.throttled_until_ms > 0 then
        held = 'throttled: ' .. s.thr_why
    elseif st == 'open' then
        held = 'breaker open: ' .. s.why
    elseif st == 'half_open' then
        held = 'breaker half-open'
    elseif s.rn > 0 and rate_used >= s.rn then
        held = string.format('at its rate limit (%d per %d ms)', s.rn, s.rp)
    end
    v.hold = held or ''
    return v
end

---------------------------------------------------------------------------
-- corral_version: no keys, no arguments -> the library version (integer).
local function corral_version()
    return LIB_VERSION
end

local DECLARE_KNOWN = 'priorities, order, weights, max_attempts, backoff_base_ms, ' ..
                          'backoff_cap_ms, timeout_ms, lease_ms, result_ttl_ms, max_payload, ' ..
                          'max_result, service'
local DECLARE_KEYS = {}
for k in DECLARE_KNOWN:gmatch('[%w_]+') do
    DECLARE_KEYS[k] = true
end

-- corral_declare: KEYS[1] queue; ARGV[1] settings JSON {priorities, order,
-- weights, max_attempts, backoff_base_ms, backoff_cap_ms, timeout_ms, lease_ms,
-- result_ttl_ms, max_payload, max_result, service} -> "OK". Registers or
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
        'service', type(s.service) == 'string' and s.service or ''
    }
    if fields[10] > fields[12] then
        fail('BADSETTING', 'queue "%s": backoff_base_ms (%d) is above backoff_cap_ms (%d)', q, fields[10],
             fields[12])
    end
    local old = redis.call('HGET', K .. ':conf', 'priorities')
    if old then
        local nold = #split(old)
        local last = #prios - 1
        for level = #prios, nold - 1 do
            local src = K .. ':q:' .. level
            for _, id in ipairs(redis.call('LRANGE', src, 0, -1)) do
                redis.call('HSET', job_key(K, id), 'prio', last, 'priority', prios[#prios])
                redis.call('RPUSH', K .. ':q:' .. last, id)
            end
            redis.call('DEL', src)
        end
    end
    redis.call('HSET', K .. ':conf', unpack(fields))
    redis.call('DEL', K .. ':wrr')
    redis.call('SADD', prefix .. ':queues', q)
    return 'OK'
end

local OPTION_KEYS = {priority = true, delay_ms = true, max_attempts = true, timeout_ms = true,
                     service = true, unique_key = true}

-- corral_enqueue: KEYS[1] queue; ARGV[1] payload (JSON text); ARGV[2]
-- optional options JSON {priority (name or index), delay_ms, max_attempts,
-- timeout_ms, service, unique_key} -> the job id (string). With unique_key, a
-- job whose record still exists with that key is returned instead.
local function corral_enqueue(keys, args)
    local K, q = queue_key(keys[1])
    local c = load_conf(K, q)
    local payload = args[1]
    if payload == nil then
        fail('BADPAYLOAD', 'queue "%s": missing payload', q)
    end
    if #payload > c.max_payload then
        fail('TOOBIG', 'queue "%s": payload is %d bytes, limit is %d (max_payload)', q, #payload,
             c.max_payload)
    end
    -- cjson stops at a NUL byte: what follows it would go unchecked.
    if payload:find('\0', 1, true) or not pcall(json_decode, payload) then
        fail('BADPAYLOAD', 'queue "%s": payload is not valid JSON', q)
    end
    if #args > 2 then
        fail('BADARG', 'queue "%s": corral_enqueue takes a payload and one options object, got %d ' ..
                 'arguments', q, #args)
    end
    local o = {}
    if args[2] ~= nil and args[2] ~= '' then
        local ok, v = pcall(json_decode, args[2])
        if not ok or type(v) ~= 'table' then
            fail('BADOPTION', 'queue "%s": options must be a JSON object', q)
        end
        for k, _ in pairs(v) do
            if not OPTION_KEYS[k] then
                fail('BADOPTION', 'queue "%s": unknown option "%s" (known: priority, delay_ms, ' ..
                         'max_attempts, timeout_ms, service, unique_key)', q, tostring(k))
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
    local delay = 0
    if o.delay_ms ~= nil then
        delay = int_arg('BADOPTION', o.delay_ms, 'delay_ms', 0, 366 * 86400000)
    end
    local max_attempts = c.max_attempts
    if o.max_attempts ~= nil then
        max_attempts = int_arg('BADOPTION', o.max_attempts, 'max_attempts', 1, 1000)
    end
    local timeout = c.timeout_ms
    if o.timeout_ms ~= nil then
        timeout = int_arg('BADOPTION', o.timeout_ms, 'timeout_ms', 1, 86400000)
    end
    local service = c.service
    if o.service ~= nil then
        if not valid_name(o.service) then
            fail('BADOPTION', 'queue "%s": bad service name "%s"', q, shown(o.service):sub(1, 64))
        end
        service = o.service
    end
    local uk = nil
    if o.unique_key ~= nil then
        uk = o.unique_key
        if type(uk) ~= 'string' or #uk < 1 or #uk > 256 then
            fail('BADOPTION', 'queue "%s": unique_key must be a string of 1 to 256 bytes', q)
        end
        local existing = redis.call('GET', K .. ':uniq:' .. uk)
        if existing and redis.call('EXISTS', job_key(K, existing)) == 1 then
            return existing
        end
    end

    local now = now_ms()
    local id = tostring(redis.call('INCR', K .. ':seq'))
    local jk = job_key(K, id)
    local state = delay > 0 and 'scheduled' or 'queued'
    redis.call('HSET', jk, 'id', id, 'queue', q, 'state', state, 'priority',
               c.priorities[level + 1], 'prio', level, 'payload', payload, 'service', service,
               'attempts', 0, 'max_attempts', max_attempts, 'run', 0, 'timeout_ms', timeout,
               'created_ms', now, 'run_at_ms', now + delay, 'queued_ms', now,
               'created_us', now_us())
    if uk then
        redis.call('HSET', jk, 'unique_key', uk)
        redis.call('SET', K .. ':uniq:' .. uk, id)
    end
    if delay > 0 then
        redis.call('ZADD', K .. ':sched', now + delay, id)
    else
        make_ready(K, id, level, false)
        wake(K, 1)
    end
    stat(K, now, 'enq')
    return id
end

-- Picks the next priority level to serve, or nil when every level is empty.
-- lens holds each level's length and is kept up to date by the caller.
local function picker(K, c)
    local n = #c.priorities
    local lens = {}
    for i = 0, n - 1 do
        lens[i] = redis.call('LLEN', K .. ':q:' .. i)
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
        end
    end
    -- Smooth weighted round-robin (as nginx's upstreams) over the non-empty
    -- levels: every level is served in proportion to its weight, none starves.
    local cur = {}
    local saved = redis.call('HMGET', K .. ':wrr', unpack((function()
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
        redis.call('HSET', K .. ':wrr', unpack(f))
    end
    local left = function()
        local total = 0
        for i = 0, n - 1 do
            total = total + lens[i]
        end
        return total
    end
    return pick, save, left
end

-- corral_reserve: KEYS[1] queue; ARGV[1] worker id; ARGV[2] how many jobs
-- (1-1000) -> a list of jobs, each a list {id, run, attempts, max_attempts,
-- timeout_ms, priority, service, payload}. Promotes due scheduled jobs first.
-- Empty while the queue is paused. Each job is leased to the worker for the
-- queue's lease time; the run token must accompany its ack/fail/defer/renew.
local function corral_reserve(keys, args)
    local K, q, prefix = queue_key(keys[1])
    local c = load_conf(K, q)
    local worker = args[1]
    if worker == nil or worker == '' or #worker > 128 then
        fail('BADARG', 'reserve: worker id must be 1-128 bytes')
    end
    local n = int_arg('BADARG', args[2] or 1, 'reserve count', 1, MAX_BATCH)
    local max_inflight = int_arg('BADARG', args[3] or 0, 'max_inflight', 0, 1000000)
    local now = now_ms()
    promote_due(K, c, now, MAX_BATCH)
    if redis.call('EXISTS', K .. ':paused') == 1 then
        redis.call('DEL', K .. ':wake')
        return {}
    end
    local s, host, allowed, gate_until, gate_why = nil, nil, n, nil, nil
    if c.service ~= '' then
        s = load_svc(svc_key(prefix, c.service), c.service)
        if s ~= nil then
            host = worker:match('^(.*):[^:]*$') or worker
            allowed, gate_until, gate_why = svc_gate(s, now, n, host, max_inflight)
        end
    end
    local probe = s ~= nil and s.st == 'half_open'
    local pick, save, left = picker(K, c)
    local start_us = now_us()
    local out = {}
    local deadline = now + c.lease_ms
    while #out < allowed do
        local level = pick()
        if level == nil then
            break
        end
        local id = redis.call('LPOP', K .. ':q:' .. level)
        local jk = job_key(K, id)
        local j = redis.call('HMGET', jk, 'attempts', 'max_attempts', 'run', 'timeout_ms',
                            'priority', 'service', 'payload')
        if j[1] then
            local attempts = tonumber(j[1]) + 1
            local run = tonumber(j[3]) + 1
            redis.call('HSET', jk, 'state', 'active', 'attempts', attempts, 'run', run,
                       'started_ms', now, 'started_us', start_us, 'worker', worker)
            if probe then
                redis.call('HSET', jk, 'probe', '1')
            end
            redis.call('ZADD', K .. ':active', deadline, id)
            out[#out + 1] = {id, tostring(run), attempts, tonumber(j[2]), tonumber(j[4]), j[5],
                             j[6], j[7]}
        end
    end
    save()
    if s ~= nil then
        svc_granted(s, now, #out, host)
    end
    local waiting = left()
    if waiting == 0 then
        -- Nothing left: markers would only wake idle workers for nothing.
        redis.call('DEL', K .. ':wake')
    end
    -- Only callers that pass max_inflight (library version 2 workers, with
    -- 0 for none) know the gate element; older ones just get fewer jobs.
    if gate_until ~= nil and waiting > 0 and args[3] ~= nil then
        -- Jobs wait for the service: the worker sleeps on the service's
        -- wake list of its host until gate_until or a state change.
        redis.call('HINCRBY', s.key .. ':sl', host, 1)
        redis.call('HSET', s.key, 'slp', 1)
        -- Relative, so that the worker's clock need not agree with Redis's.
        out[#out + 1] = string.format('gate %d %s', math.max(gate_until - now, 1), gate_why)
    end
    return out
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
            redis.call('ZADD', K .. ':active', now + c.lease_ms, id)
        end
        out[#out + 1] = st
    end
    return out
end

-- corral_ack: KEYS[1] queue; ARGV worker, then triples id run result ... ->
-- per job "done", "dead" (the result is over max_result), or a refusal
-- that writes nothing: "RECLAIMED" (this run's lease was taken back) or
-- "STALE" (no such run of this worker), as corral_renew answers.
local function corral_ack(keys, args)
    local K, q, prefix = queue_key(keys[1])
    local c = load_conf(K, q)
    local now = now_ms()
    local b = svc_batch(K, c, prefix)
    local out = {}
    for i = 2, #args - 2, 3 do
        local id, run, result = args[i], args[i + 1], args[i + 2]
        local jk = job_key(K, id)
        local st = run_status(jk, run, args[1])
        if st ~= 'active' then
            out[#out + 1] = st
        else
            local started = svc_leave(b, jk, now, 'ok') or redis.call('HGET', jk, 'started_ms')
            redis.call('ZREM', K .. ':active', id)
            if #result > c.max_result then
                to_dead(K, c, id, jk, now, string.format(
                    'result is %d bytes, limit is %d (max_result)', #result, c.max_result))
                stat_proc(K, now, 'fail', started)
                out[#out + 1] = 'dead'
            else
                finish(K, c, id, jk, 'done', now, {'result', result}, false)
                stat_proc(K, now, 'done', started)
                out[#out + 1] = 'done'
            end
        end
    end
    svc_apply(b, now)
    return out
end

-- corral_fail: KEYS[1] queue; ARGV worker, then quadruples id run kind error
-- ... where kind is "retry" or "permanent" -> per job "scheduled" (retry
-- after back-off), "dead" (permanent, or attempts used up), or a refusal:
-- "RECLAIMED" or "STALE" (as corral_renew).
local function corral_fail(keys, args)
    local K, q, prefix = queue_key(keys[1])
    local c = load_conf(K, q)
    for i = 2, #args - 3, 4 do
        local kind = args[i + 2]
        if kind ~= 'retry' and kind ~= 'permanent' then
            fail('BADARG', 'fail: kind must be retry or permanent, got "%s"', tostring(kind):sub(1, 32))
        end
    end
    -- Seed once per call: jobs failing in one batch must get different delays.
    local t = redis.call('TIME')
    math.randomseed(tonumber(t[2]) * 1000 + tonumber(t[1]) % 1000)
    local now = now_ms()
    local b = svc_batch(K, c, prefix)
    -- Calls that failed while the breaker was already open or half-open
    -- (late calls, failed probes) wait for the breaker, attempt refunded:
    -- the outage, not the job, is to blame.
    local outage = b ~= nil and b.s.st ~= 'closed'
    local waiting = {}
    local out = {}
    for i = 2, #args - 3, 4 do
        local id, run, kind, err = args[i], args[i + 1], args[i + 2], args[i + 3]
        if #err > 4096 then
            err = err:sub(1, 4096)
        end
        local jk = job_key(K, id)
        local st = run_status(jk, run, args[1])
        if st ~= 'active' then
            out[#out + 1] = st
        elseif outage and kind == 'retry' then
            svc_leave(b, jk, now, 'fail', err)
            redis.call('ZREM', K .. ':active', id)
            local attempts = tonumber(redis.call('HGET', jk, 'attempts'))
            redis.call('HSET', jk, 'attempts', math.max(attempts - 1, 0), 'error', err)
            redis.call('HINCRBY', jk, 'deferrals', 1)
            waiting[#waiting + 1] = {id, jk}
            out[#out + 1] = 'scheduled'
        else
            -- A permanent failure (4xx) means the service answered: it
            -- counts as a call, not as a breaker failure.
            svc_leave(b, jk, now, kind == 'retry' and 'fail' or 'ok', err)
            redis.call('ZREM', K .. ':active', id)
            local j = redis.call('HMGET', jk, 'attempts', 'max_attempts', 'started_ms')
            local attempts, max = tonumber(j[1]), tonumber(j[2])
            stat_proc(K, now, 'fail', j[3])
            if kind == 'permanent' or attempts >= max then
                if kind == 'retry' then
                    err = string.format('%s (attempt %d of %d)', err, attempts, max)
                end
                to_dead(K, c, id, jk, now, err)
                out[#out + 1] = 'dead'
            else
                local at = now + backoff_ms(c, attempts)
                redis.call('HSET', jk, 'state', 'scheduled', 'error', err, 'run_at_ms', at)
                redis.call('ZADD', K .. ':sched', at, id)
                stat(K, now, 'retry')
                out[#out + 1] = 'scheduled'
            end
        end
    end
    svc_apply(b, now)
    for _, w in ipairs(waiting) do
        -- Spread over a second after the breaker may half-open.
        local at = math.max(b.s['until'], now) + math.floor(math.random() * 1000)
        redis.call('HSET', w[2], 'state', 'scheduled', 'run_at_ms', at)
        redis.call('ZADD', K .. ':sched', at, w[1])
        svc_hold_job(b, K, w[1])
        stat(K, now, 'defer')
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
    local c = load_conf(K, q)
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
    local b = svc_batch(K, c, prefix)
    local out, ready = {}, 0
    for i = 2, #args - 4, 5 do
        local id, run, kind, why = args[i], args[i + 1], args[i + 3], args[i + 4]
        local delay = tonumber(args[i + 2])
        local jk = job_key(K, id)
        local st = run_status(jk, run, args[1])
        if st ~= 'active' then
            out[#out + 1] = st
        else
            svc_leave(b, jk, now, nil)
            if kind == 'throttle' then
                svc_throttle(b, now, delay, why)
            elseif kind == 'quota' and b ~= nil then
                delay = math.max(delay, svc_quota(b, now, why))
                svc_hold_job(b, K, id)
            end
            redis.call('ZREM', K .. ':active', id)
            local attempts = tonumber(redis.call('HGET', jk, 'attempts'))
            redis.call('HSET', jk, 'attempts', math.max(attempts - 1, 0), 'run_at_ms', now + delay)
            if why ~= '' then
                redis.call('HSET', jk, 'error', why:sub(1, 4096))
            end
            redis.call('HINCRBY', jk, 'deferrals', 1)
            if delay > 0 or kind == 'quota' then
                redis.call('HSET', jk, 'state', 'scheduled')
                redis.call('ZADD', K .. ':sched', now + delay, id)
                out[#out + 1] = 'scheduled'
            else
                redis.call('HSET', jk, 'state', 'queued', 'queued_ms', now)
                make_ready(K, id, level_of(c, jk), true)
                ready = ready + 1
                out[#out + 1] = 'queued'
            end
            stat(K, now, 'defer')
        end
    end
    svc_apply(b, now)
    wake(K, ready)
    return out
end

-- corral_promote: KEYS[1] queue; ARGV[1] optional limit (default 1000) ->
-- how many due scheduled jobs were made ready (idle workers are woken).
local function corral_promote(keys, args)
    local K, q = queue_key(keys[1])
    local c = load_conf(K, q)
    return promote_due(K, c, now_ms(), int_arg('BADARG', args[1] or MAX_BATCH, 'limit', 1, 100000))
end

-- Requeues (at the front of its level) or, with attempts used up, kills a job
-- whose lease is gone. The run it takes is recorded in the job's "reclaimed"
-- field, so that run's later outcome and renew answer RECLAIMED and change
-- nothing (run_status). With unseen set, the job never reached its worker
-- (the reserve's reply was lost): its attempt is given back and it is not
-- counted as lost.
local function reclaim_one(K, c, b, id, now, why, unseen)
    local jk = job_key(K, id)
    redis.call('ZREM', K .. ':active', id)
    local j = redis.call('HMGET', jk, 'attempts', 'max_attempts', 'worker', 'state', 'run')
    if not j[1] or j[4] ~= 'active' then
        return 0
    end
    svc_leave(b, jk, now, nil)
    redis.call('HSET', jk, 'reclaimed', j[5])
    local attempts, max = tonumber(j[1]), tonumber(j[2])
    if unseen then -- its attempt back, its last run's error kept
        redis.call('HSET', jk, 'state', 'queued', 'queued_ms', now, 'attempts',
                   math.max(attempts - 1, 0))
        make_ready(K, id, level_of(c, jk), true)
        return 1
    end
    local err = string.format('%s (worker %s, attempt %d of %d)', why, j[3] or '?', attempts, max)
    stat(K, now, 'lost')
    if attempts >= max then
        to_dead(K, c, id, jk, now, err)
    else
        redis.call('HSET', jk, 'state', 'queued', 'error', err, 'queued_ms', now)
        make_ready(K, id, level_of(c, jk), true)
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
    local b = svc_batch(K, c, prefix)
    local limit = int_arg('BADARG', args[1] or MAX_BATCH, 'limit', 1, 100000)
    local ids = redis.call('ZRANGEBYSCORE', K .. ':active', '-inf', now, 'LIMIT', 0, limit)
    local n = reclaim_all(K, c, b, ids, now, 'lease expired')
    svc_apply(b, now)
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
    local b = svc_batch(K, c, prefix)
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
    for _, id in ipairs(redis.call('ZRANGE', K .. ':active', 0, -1)) do
        local w = redis.call('HGET', job_key(K, id), 'worker') or ''
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
    svc_apply(b, now)
    wake(K, n)
    return n
end

-- corral_dead_retry: KEYS[1] queue; ARGV job ids, or the single argument
-- "--all" -> how many dead jobs were queued again with their attempts reset.
local function corral_dead_retry(keys, args)
    local K, q = queue_key(keys[1])
    local c = load_conf(K, q)
    local ids = args
    if args[1] == '--all' then
        ids = redis.call('LRANGE', K .. ':dead', 0, -1)
    else
        for _, id in ipairs(ids) do -- all or nothing
            local state = redis.call('HGET', job_key(K, id), 'state')
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
        local j = redis.call('HMGET', jk, 'state')
        if j[1] == 'dead' then
            redis.call('LREM', K .. ':dead', 1, id)
            redis.call('HSET', jk, 'state', 'queued', 'attempts', 0, 'queued_ms', now)
            redis.call('HDEL', jk, 'finished_ms')
            redis.call('DEL', K .. ':fin:' .. id)
            make_ready(K, id, level_of(c, jk), false)
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
    local ids = redis.call('LRANGE', K .. ':dead', 0, -1)
    for _, id in ipairs(ids) do
        local jk = job_key(K, id)
        local uk = redis.call('HGET', jk, 'unique_key')
        if uk then
            redis.call('DEL', K .. ':uniq:' .. uk)
        end
        redis.call('DEL', jk, K .. ':fin:' .. id)
    end
    redis.call('DEL', K .. ':dead')
    return #ids
end

-- corral_pause / corral_resume: KEYS[1] queue -> "OK". While paused, reserve
-- hands out nothing; enqueue, retries and promotion go on.
local function corral_pause(keys, args)
    local K, q = queue_key(keys[1])
    load_conf(K, q)
    redis.call('SET', K .. ':paused', now_ms())
    return 'OK'
end

local function corral_resume(keys, args)
    local K, q = queue_key(keys[1])
    local c = load_conf(K, q)
    redis.call('DEL', K .. ':paused')
    local n = 0
    for i = 0, #c.priorities - 1 do
        n = n + redis.call('LLEN', K .. ':q:' .. i)
    end
    if n > 0 then
        wake(K, n)
    end
    return 'OK'
end

-- corral_cancel: KEYS[1] queue; ARGV[1] job id -> "cancelled". Only a job
-- that is queued, scheduled or dead can be cancelled; a running one cannot.
local function corral_cancel(keys, args)
    local K, q = queue_key(keys[1])
    local c = load_conf(K, q)
    local id = args[1] or ''
    local jk = job_key(K, id)
    local state = redis.call('HGET', jk, 'state')
    if not state then
        fail('NOJOB', 'queue "%s": no job %s', q, id:sub(1, 40))
    end
    if state ~= 'queued' and state ~= 'scheduled' and state ~= 'dead' then
        fail(state == 'active' and 'RUNNING' or 'FINISHED',
             'queue "%s": job %s is %s and cannot be cancelled', q, id:sub(1, 40), state)
    end
    unlink(K, jk, id, state)
    local uk = redis.call('HGET', jk, 'unique_key')
    if uk then
        redis.call('DEL', K .. ':uniq:' .. uk)
    end
    finish(K, c, id, jk, 'cancelled', now_ms(), {}, false)
    return 'cancelled'
end

local NUMERIC = {attempts = true, max_attempts = true, timeout_ms = true, created_ms = true,
                 run_at_ms = true, queued_ms = true, started_ms = true, finished_ms = true,
                 deferrals = true, prio = true, run = true}
-- created_us and started_us stay strings: cjson prints numbers with 14
-- significant digits, too few for microseconds since 1970.

-- corral_job: KEYS[1] queue; ARGV[1] job id -> the job as a JSON object, or
-- nil when there is no such job (never existed, or its result expired).
local function corral_job(keys, args)
    local K, q = queue_key(keys[1])
    local h = redis.call('HGETALL', job_key(K, args[1] or ''))
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
        elseif k ~= 'lost' and k ~= 'reclaimed' then -- internal (lost: before version 4)
            j[k] = v
        end
    end
    return cjson.encode(j)
end

-- corral_stats: KEYS[1] queue; ARGV[1] optional window in seconds (default
-- 60, whole minutes); ARGV[2] optional "lean": leave the breaker out ->
-- a JSON object: name, paused, depth, depth_by_priority, inflight,
-- scheduled, dead, enqueued_per_s, done_per_s, failed_per_s,
-- proc_ms_p50/p95/p99/mean, oldest_wait_ms, window_s, and the breaker of
-- the queue's service (as corral_breaker) unless lean.
local function corral_stats(keys, args)
    local K, q, prefix = queue_key(keys[1])
    local c = load_conf(K, q)
    local window_s = int_arg('BADARG', args[1] or 60, 'window', 60, 3600)
    local minutes = math.ceil(window_s / 60)
    local now = now_ms()
    local by, depth, oldest = {}, 0, nil
    for i, name in ipairs(c.priorities) do
        local lk = K .. ':q:' .. (i - 1)
        local n = redis.call('LLEN', lk)
        by[name] = n
        depth = depth + n
        if n > 0 then
            local head = redis.call('LINDEX', lk, 0)
            local t = tonumber(redis.call('HGET', job_key(K, head), 'queued_ms'))
            if t and (oldest == nil or t < oldest) then
                oldest = t
            end
        end
    end
    local m = math.floor(now / 60000)
    local sums = {enq = 0, done = 0, fail = 0, dead = 0, retry = 0, defer = 0, lost = 0,
                  ps = 0, pn = 0}
    local hist = {}
    for b = 0, #HIST do
        hist[b] = 0
    end
    for k = m - minutes, m do
        local h = redis.call('HGETALL', K .. ':st:' .. k)
        for i = 1, #h, 2 do
            local f, v = h[i], tonumber(h[i + 1])
            if sums[f] ~= nil then
                sums[f] = sums[f] + v
            elseif f:sub(1, 1) == 'h' then
                local b = tonumber(f:sub(2))
                hist[b] = (hist[b] or 0) + v
            end
        end
    end
    local span_s = (now - (m - minutes) * 60000) / 1000
    local function pct(p)
        if sums.pn == 0 then
            return 0
        end
        local want, acc = p * sums.pn, 0
        for b = 0, #HIST do
            local cnt = hist[b]
            if cnt > 0 and acc + cnt >= want then
                local lo = b == 0 and 0 or HIST[b]
                local hi = HIST[b + 1] or lo
                return math.floor(lo + (hi - lo) * (want - acc) / cnt + 0.5)
            end
            acc = acc + cnt
        end
        return HIST[#HIST]
    end
    local function rate(n)
        return math.floor(n / span_s * 1000 + 0.5) / 1000
    end
    local paused = redis.call('EXISTS', K .. ':paused') == 1
    local breaker = nil
    if c.service ~= '' and args[2] ~= 'lean' then
        local sv = load_svc(svc_key(prefix, c.service), c.service)
        if sv ~= nil then
            breaker = svc_view(sv, now)
        end
    end
    return cjson.encode({
        name = q, paused = paused, depth = depth, depth_by_priority = by,
        inflight = redis.call('ZCARD', K .. ':active'),
        scheduled = redis.call('ZCARD', K .. ':sched'),
        dead = redis.call('LLEN', K .. ':dead'),
        enqueued_per_s = rate(sums.enq), done_per_s = rate(sums.done),
        failed_per_s = rate(sums.fail), retried = sums.retry, deferred = sums.defer,
        lost = sums.lost, died = sums.dead,
        proc_ms_p50 = pct(0.50), proc_ms_p95 = pct(0.95), proc_ms_p99 = pct(0.99),
        proc_ms_mean = sums.pn > 0 and math.floor(sums.ps / sums.pn + 0.5) or 0,
        oldest_wait_ms = oldest and (now - oldest) or 0, window_s = window_s,
        service = c.service, time_ms = now, breaker = breaker
    })
end

-- Returns the service key and name from the one key argument: a bare name
-- (prefix "corral") or "<prefix>:svc:<name>".
local function service_key(key)
    if key == nil then
        fail('BADARG', 'expected one key: the service name')
    end
    local prefix, name = key:match('^(.-):svc:(.*)$')
    if prefix == nil then
        prefix, name = 'corral', key
    end
    if not valid_name(name) then
        fail('BADNAME', 'bad service name "%s": use 1-64 characters of A-Z a-z 0-9 _ . : -', name:sub(1, 80))
    end
    if not valid_name(prefix) then
        fail('BADNAME', 'bad key prefix "%s"', prefix:sub(1, 80))
    end
    return svc_key(prefix, name), name, prefix
end

-- corral_declare_service: KEYS[1] service; ARGV[1] settings JSON
-- {window_ms, min_calls, failure_rate, slow_call_ms, slow_rate, open_for_ms,
-- open_max_ms, half_open_calls, rate, rate_period_ms} (rates in percent;
-- rate 0 = no limit) -> "OK". Registers or updates a service's breaker
-- settings; its state is kept.
local function corral_declare_service(keys, args)
    local SK, name, prefix = service_key(keys[1])
    local ok, v = pcall(json_decode, args[1] or '')
    if not ok or type(v) ~= 'table' then
        fail('BADSETTING', 'service "%s": settings must be a JSON object', name)
    end
    local function num(k, dflt, lo, hi)
        local x = v[k]
        if x == nil then
            x = dflt
        end
        x = tonumber(x)
        if x == nil or x < lo or x > hi then
            fail('BADSETTING', 'service "%s": %s must be a number from %d to %d', name, k, lo, hi)
        end
        return x
    end
    local fields = {
        'win', math.floor(num('window_ms', 60000, 100, 86400000)),
        'minc', math.floor(num('min_calls', 20, 1, 1000000)),
        'fr', num('failure_rate', 50, 0.01, 100),
        'slow', math.floor(num('slow_call_ms', 30000, 1, 86400000)),
        'sr', num('slow_rate', 80, 0.01, 100),
        'of', math.floor(num('open_for_ms', 30000, 1, 86400000)),
        'om', math.floor(num('open_max_ms', 300000, 1, 86400000)),
        'hc', math.floor(num('half_open_calls', 3, 1, 10000)),
        'rn', math.floor(num('rate', 0, 0, 100000000)),
        'rp', math.floor(num('rate_period_ms', 60000, 1, 86400000))
    }
    if fields[12] > fields[14] then
        fail('BADSETTING', 'service "%s": open_for_ms must not exceed open_max_ms', name)
    end
    if not redis.call('HGET', SK, 'st') then
        fields[#fields + 1] = 'st'
        fields[#fields + 1] = 'closed'
    end
    redis.call('HSET', SK, unpack(fields))
    redis.call('SADD', prefix .. ':services', name)
    return 'OK'
end

local function known_service(SK, name)
    local s = load_svc(SK, name)
    if s == nil then
        fail('NOSERVICE', 'unknown service "%s": no corrald or worker has declared it', name)
    end
    return s
end

-- corral_breaker: KEYS[1] service -> its breaker, throttle and limits as a
-- JSON object (service, state, failure_rate, calls, open_until_ms, ...).
local function corral_breaker(keys, args)
    local SK, name = service_key(keys[1])
    return cjson.encode(svc_view(known_service(SK, name), now_ms()))
end

-- corral_breaker_reset: KEYS[1] service -> "OK". Closes the breaker, ends a
-- throttle and wakes the workers waiting for the service.
local function corral_breaker_reset(keys, args)
    local SK, name = service_key(keys[1])
    local s = known_service(SK, name)
    local now = now_ms()
    -- Jobs that wait for the breaker run now, not when it would have let
    -- them; jobs in an ordinary back-off keep theirs.
    for _, e in ipairs(redis.call('SMEMBERS', SK .. ':held')) do
        local K, id = e:match('^(.*)|([^|]*)$')
        if K and redis.call('ZSCORE', K .. ':sched', id) then
            redis.call('ZADD', K .. ':sched', 'XX', now, id)
            redis.call('HSET', job_key(K, id), 'run_at_ms', now)
        end
    end
    redis.call('HSET', SK, 'thr', 0, 'thr_why', '')
    svc_close(s, now)
    return 'OK'
end

local RO = {'no-writes'}
redis.register_function{function_name = 'corral_version', callback = api(corral_version), flags = RO}
redis.register_function('corral_declare', api(corral_declare))
redis.register_function('corral_enqueue', api(corral_enqueue))
redis.register_function('corral_reserve', api(corral_reserve))
redis.register_function('corral_renew', api(corral_renew))
redis.register_function('corral_ack', api(corral_ack))
redis.register_function('corral_fail', api(corral_fail))
redis.register_function('corral_defer', api(corral_defer))
redis.register_function('corral_promote', api(corral_promote))
redis.register_function('corral_reclaim', api(corral_reclaim))
redis.register_function('corral_reclaim_worker', api(corral_reclaim_worker))
redis.register_function('corral_dead_retry', api(corral_dead_retry))
redis.register_function('corral_dead_purge', api(corral_dead_purge))
redis.register_function('corral_pause', api(corral_pause))
redis.register_function('corral_resume', api(corral_resume))
redis.register_function('corral_cancel', api(corral_cancel))
redis.register_function{function_name = 'corral_job', callback = api(corral_job), flags = RO}
redis.register_function{function_name = 'corral_stats', callback = api(corral_stats), flags = RO}
redis.register_function('corral_declare_service', api(corral_declare_service))
redis.register_function{function_name = 'corral_breaker', callback = api(corral_breaker), flags = RO}
redis.register_function('corral_breaker_reset', api(corral_breaker_reset))
