-- prelude.lua: the shared helpers of corral's Redis Function library.
--
-- The library is a few modules named after their duties (this directory),
-- concatenated by the build in the order of queue/lua/ORDER into the one
-- source loaded with FUNCTION LOAD: first "#!lua name=corral" and
-- "local LIB_VERSION = N" (N from queue/lua/VERSION), then prelude.lua,
-- services.lua, stats.lua, tenants.lua, jobs.lua, runs.lua and api.lua. Each module sees
-- the locals of those before it. Every state change of a job is one call
-- of this library, so it is atomic and the same for corrald, corral-worker,
-- corralctl and application services in any language.
--
-- Keys. Every function takes one key, KEYS[1], and the application-facing
-- calls keep it that way (FCALL corral_enqueue 1 <queue> ...):
--   a queue, bare ("prompts": prefix "corral") or "<prefix>:{<queue>}";
--   a service, bare ("openai") or "<prefix>:svc:<name>".
-- Every other key a function touches is derived from that key, as the
-- header of the module that touches it says: a queue's own keys K:* from
-- K = "<prefix>:{<queue>}" (jobs.lua; all in the hash slot of {<queue>});
-- the registries <prefix>:queues and <prefix>:services from its prefix; a
-- queue's service's keys <prefix>:svc:<service>* from its prefix and the
-- service named in K:conf (services.lua). The registries and service keys
-- live outside the queue's slot: single-Redis deployments.
--
-- Here: error replies (each begins with a code word), clocks, strict JSON
-- and UTF-8, names, the queue key and its settings, integer arguments.

local MAX_BATCH = 1000 -- most jobs one reserve, promote or reclaim moves
local gate = {} -- gate.lua's functions (the service gate), and tokens.lua's gate.ledger

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
    BADDEADLINE = true, -- the enqueue option deadline_ms is not a positive integer
    BADSETTING = true, -- a queue's or service's settings are invalid
    NOJOB = true,      -- no such job in the queue
    RUNNING = true,    -- retired in v6 (cancel stops running jobs); answered by v5 and before
    FINISHED = true,   -- the job already ended (done or cancelled)
    NOTDEAD = true,    -- dead_retry of a job that is not dead
    BADTENANT = true,  -- the tenant option is not a tenant name (tenants.lua)
    BADTOKENS = true,  -- the enqueue option tokens is not a whole number 1-10^9 (tokens.lua)
}

-- Raises an error reply "<CODE> <message>" for bad input. Every function
-- validates before it writes, so a refused call changes nothing.
local function fail(code, fmt, ...)
    if not CODES[code] then
        error('corral: unknown error code ' .. tostring(code), 0)
    end
    error({corral = code .. ' ' .. string.format(fmt, ...)}, 0)
end

-- redis.call, kept as an upvalue by api() at the start of every call: a
-- global is looked up through the globals' metatable (Redis's sandbox)
-- and then in the redis table, some 200 instructions a call site; the
-- hot path makes about 30 calls a job (docs/benchmarks.md, "Fifth
-- round"). Not known while the library loads (redis.call does not exist
-- then).
local rcall

-- Turns fail()'s errors into plain error replies (without the script
-- location Redis appends to raised errors); anything else is re-raised.
local function api(f)
    return function(keys, args)
        rcall = redis.call
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

-- Integers as the decimal text a redis.call() argument needs. Redis turns
-- a Lua number argument into text with a printf of its own, some 0.15-0.3
-- us each (an HSET of a job's 14 fields with 8 numbers: 5.5 us, with the
-- same values as text 3.3 us); the hot path passes text instead, made once
-- per call (the clock) or kept here for the small integers that recur
-- (counts, attempts, levels): derived data (prelude's hot-path caches).
-- The same table maps such a text back to its number (int_texts['3'] ==
-- 3: a string key never meets a number key), so a hot path that reads a
-- small integer from Redis writes (int_texts[v] or tonumber(v)): tonumber
-- of a text is two strtod()s in Lua 5.1, some 1,100 instructions, the
-- table's lookup under 100. 0-64 are there from the start.
local int_texts = {}
for i = 0, 64 do
    local t = i .. '' -- no string.format while the library loads
    int_texts[i], int_texts[t] = t, i
end
local function itxt(n)
    local t = int_texts[n]
    if t == nil then
        t = string.format('%d', n)
        if n >= -1024 and n <= 1024 then
            int_texts[n], int_texts[t] = t, n
        end
    end
    return t
end

-- The server clock in milliseconds, and in microseconds as text for the
-- latency fields (created_us, started_us) that benchmarks and operators use
-- to see sub-millisecond pick-up times: one TIME for both (a redis.call
-- costs a function more than the command itself). The third value is the
-- milliseconds as text (itxt), made from TIME's own text.
-- The seconds' text and its milliseconds are kept while the second lasts,
-- and the first three digits of the microseconds map to their number
-- (ms_of, at most 1,000 entries): no tonumber (two strtod()s each) on most
-- calls (derived data: prelude's hot-path caches).
local clock
do
    local sec_t, sec_ms, ms_of = nil, 0, {}
    clock = function()
        local t = rcall('TIME')
        local st, ut = t[1], t[2]
        if st ~= sec_t then
            sec_t, sec_ms = st, tonumber(st) * 1000
        end
        if #ut == 6 then -- 9 times in 10: the texts without a string.format
            local m3 = ut:sub(1, 3)
            local ms = ms_of[m3]
            if ms == nil then
                ms = tonumber(m3)
                ms_of[m3] = ms
            end
            return sec_ms + ms, st .. ut, st .. m3
        end
        local us = tonumber(ut)
        local ms = math.floor(us / 1000)
        return sec_ms + ms, st .. string.format('%06d', us), st .. string.format('%03d', ms)
    end
end

local function now_ms()
    local t = rcall('TIME')
    return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
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

-- Hot-path caches, kept in the library's Lua state between calls (a
-- FUNCTION LOAD starts them empty). Creating a Lua string or table costs a
-- function call some 0.2-0.3 us in Redis, more than most commands it
-- makes, so what every call would rebuild from the same input is kept:
-- a key's parsed names, a queue's parsed settings. Only derived data is
-- kept, never state: each entry is checked against what Redis holds
-- (load_conf) or depends on its key text alone (queue_key). CACHE_MAX
-- bounds each; a full cache starts again empty.
local CACHE_MAX = 1024
local conf_cache, conf_cached = {}, 0

-- Returns K and the queue name from the one key argument.
local queue_key
do -- its cache in a block: the main chunk's locals are few (200)
    local key_cache, key_cached = {}, 0
    queue_key = function(key)
        local hit = key_cache[key]
        if hit then
            return hit[1], hit[2], hit[3]
        end
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
        local K = prefix .. ':{' .. q .. '}'
        if key_cached >= CACHE_MAX then
            key_cache, key_cached = {}, 0
        end
        key_cache[key], key_cached = {K, q, prefix}, key_cached + 1
        return K, q, prefix
    end
end

-- The field of a host's calls in flight in a service's hash,
-- "inflight:<host>" (services.lua), kept per host (derived data).
local ifields = {[0] = 0} -- [0]: how many
local function inflight_field(host)
    local f = ifields[host]
    if f == nil then
        f = 'inflight:' .. host
        if ifields[0] >= CACHE_MAX then
            ifields = {[0] = 0}
        end
        ifields[host], ifields[0] = f, ifields[0] + 1
    end
    return f
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
                     'max_result', 'service', 'tenant_max_inflight', 'tenant_rate',
                     'tenant_rate_ms', 'tenant_tokens', 'tenant_tokens_ms', 'tenant_weights',
                     'service_gate'}

-- A queue's settings as one text (corral_declare stores it in K:conf's
-- field "packed"): load_conf's cache is valid while that text is the same.
local function conf_packed(values)
    return table.concat(values, '\n')
end

-- The queue's settings, parsed, and whether tenants were ever used on the
-- queue (tenants.lua). The table may be shared with later calls: callers
-- only read it. One HMGET when the cache holds the queue's current
-- settings; queues declared before library version 5 have no "packed" and
-- are read field by field, as before. Each field a reply holds costs a
-- call a Lua string and a table slot, so want says what else the caller
-- needs: nil, tenanted; -1, nothing (one HGET); 1, tenanted and whether
-- the queue is paused; 2, that and when K:sched has a job due at the
-- earliest (jobs.lua: K:conf's "paused" and "due"; nil: not known, look).
local function load_conf(K, q, want)
    -- "tenanted": set once a job with the option tenant was enqueued
    -- (tenants.lua); until then the reserve takes no step for tenants.
    -- The cached settings' table also keeps K:conf's name and the last
    -- "due" text with its number (derived data), so a call with a hit
    -- makes neither the key's name nor a tonumber (two strtod()s).
    local hit = conf_cache[K]
    local ck, packed, tenanted, paused, due = hit and hit.ck or K .. ':conf', nil, nil, nil, nil
    if want == -1 then
        packed = rcall('HGET', ck, 'packed')
    else
        local pt
        if want == 2 then
            pt = rcall('HMGET', ck, 'packed', 'tenanted', 'paused', 'due')
        elseif want == 1 then
            pt = rcall('HMGET', ck, 'packed', 'tenanted', 'paused')
        else
            pt = rcall('HMGET', ck, 'packed', 'tenanted')
        end
        packed, tenanted = pt[1], pt[2] ~= false
        if pt[3] then
            paused = pt[3] == '1'
        end
        local dt = pt[4]
        if dt and hit and dt == hit.due_t then
            due = hit.due
        elseif dt then
            due = tonumber(dt)
            if hit then
                hit.due_t, hit.due = dt, due
            end
        end
    end
    if hit and packed and hit.packed == packed then
        return hit, tenanted, paused, due
    end
    local v = rcall('HMGET', ck, unpack(CONF_FIELDS))
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
    if c.service:find(',', 1, true) then -- fallback.lua: "A,B" is a fallback list
        c.services = split(c.service)
        c.service = c.services[1]
    end
    if v[19] == '1' then -- gate.lua: on a Cluster no call of the queue touches its service's keys
        c.gated, c.gated_list, c.service, c.services = c.service, c.services, '', nil
    end
    -- tenants.lua: 0 (none) for queues declared before library version 6
    c.tenant_max_inflight = tonumber(v[13]) or 0
    c.tenant_rate = tonumber(v[14]) or 0
    c.tenant_rate_ms = tonumber(v[15]) or 1000
    c.tenant_tokens = tonumber(v[16]) or 0 -- tenant_tokens.lua
    c.tenant_tokens_ms = tonumber(v[17]) or 60000
    c.tenant_weights = v[18] or ''
    -- The names of the queue's keys that the hot path touches, built once.
    c.active, c.sched, c.paused, c.wake = K .. ':active', K .. ':sched', K .. ':paused', K .. ':wake'
    c.seq, c.ck = K .. ':seq', ck
    c.qkeys = {}
    for i = 1, #c.priorities do
        c.qkeys[i] = K .. ':q:' .. (i - 1)
    end
    -- Settings the hot path passes to redis.call(), as text (itxt).
    c.max_attempts_t, c.timeout_t = itxt(c.max_attempts), itxt(c.timeout_ms)
    c.result_ttl_t = itxt(c.result_ttl_ms)
    if packed then
        c.packed = packed
        if conf_cached >= CACHE_MAX then
            conf_cache, conf_cached = {}, 0
        end
        conf_cache[K], conf_cached = c, conf_cached + 1
    end
    return c, tenanted, paused, due
end

local function default_level(c)
    return math.floor((#c.priorities - 1) / 2)
end

local function job_key(K, id)
    return K .. ':job:' .. id
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

