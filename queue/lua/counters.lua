-- counters.lua: a queue's counters since library version 6, for
-- Prometheus (docs/protocol.md, "Counters"; docs/web.md, "Metrics"). Keys,
-- derived from the queue key K: K:ctr (hash, never expires), the same
-- fields as the per-minute buckets of stats.lua (enq, done, fail, retry,
-- dead, defer, lost, h0..h19, ps, pn), which only grow: a scraper's rate()
-- works across restarts of whoever reads them, and they add up across
-- queues and hosts.

-- Adds n to a counter; called wherever stats.lua adds to a minute's bucket.
-- ck: K:ctr when the caller has it (stats.lua keeps it with the bucket's key).
local function count_total(K, field, n, ck)
    rcall('HINCRBY', ck or K .. ':ctr', field, n)
end
