-- api.lua: the functions Redis knows, last, once every module is loaded.
-- Each function's header (KEYS, ARGV, reply) is above its definition in
-- its module; docs/protocol.md describes them for callers.

-- corral_version: no keys, no arguments -> the library version (integer).
local function corral_version()
    return LIB_VERSION
end


local RO = {'no-writes'}
redis.register_function{function_name = 'corral_version', callback = api(corral_version), flags = RO}
redis.register_function('corral_declare', api(corral_declare))
redis.register_function('corral_enqueue', api(corral_enqueue))
redis.register_function('corral_enqueue_many', api(corral_enqueue_many))
redis.register_function('corral_reserve', api(corral_reserve))
redis.register_function('corral_renew', api(corral_renew))
redis.register_function('corral_ack', api(corral_ack))
redis.register_function('corral_ack_reserve', api(corral_ack_reserve))
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
redis.register_function('corral_cancel_tenant', api(corral_cancel_tenant))
redis.register_function('corral_stream_append', api(corral_stream_append))
redis.register_function{function_name = 'corral_job', callback = api(corral_job), flags = RO}
redis.register_function{function_name = 'corral_stats', callback = api(corral_stats), flags = RO}
redis.register_function('corral_declare_service', api(corral_declare_service))
redis.register_function{function_name = 'corral_breaker', callback = api(corral_breaker), flags = RO}
redis.register_function('corral_breaker_reset', api(corral_breaker_reset))
redis.register_function('corral_tenant_weight', api(corral_tenant_weight))
redis.register_function{function_name = 'corral_tenants', callback = api(corral_tenants), flags = RO}
redis.register_function('corral_settle', api(corral_settle))
redis.register_function('corral_gate_acquire', api(gate.acquire)) -- gate.lua
redis.register_function('corral_gate_report', api(gate.report))

