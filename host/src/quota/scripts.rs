//! The Lua scripts that make each shared decision in one atomic step in
//! Redis. Each runs as `TAKE` followed by one of the others, which use the
//! `now` and `take` it defines.

/// The opening of every script: `now` (Redis's clock, in µs) and `take`,
/// which takes one call from a GCRA bucket (the algorithm governor uses in
/// memory): `take(key, interval_us, burst)` answers 0 when admitted, else
/// the microseconds until a call would be. A bucket is a single number,
/// its theoretical arrival time, which expires once it is in the past.
/// The `#!lua` line makes Redis (7 and later) refuse a script at its start
/// while memory is over `maxmemory`, instead of letting it write once its
/// first command got through.
pub(super) const TAKE: &str = r"#!lua
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function take(key, interval, burst)
  local tat = tonumber(redis.call('GET', key)) or now
  if tat < now then tat = now end
  local allow_at = tat + interval - interval * burst
  if allow_at > now then return math.ceil(allow_at - now) end
  local new_tat = tat + interval
  redis.call('SET', key, string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
  return 0
end
";

/// A call's admission: a place under the tenant's cap (KEYS[2], a sorted
/// set of leases; ARGV[3] places, each for ARGV[4] µs, held as ARGV[5]),
/// when there is a cap, and one call from the caller's bucket (KEYS[1],
/// ARGV[1] µs apart, ARGV[2] at once), when there is a rate. Neither is
/// taken unless both are. Answers {0} when admitted, {1} when the tenant
/// is full, {2, µs} when the rate is spent.
pub(super) const ADMIT: &str = r"
local cap = tonumber(ARGV[3])
if cap > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if redis.call('ZCARD', KEYS[2]) >= cap then return {1} end
end
local interval = tonumber(ARGV[1])
if interval > 0 then
  local wait = take(KEYS[1], interval, tonumber(ARGV[2]))
  if wait > 0 then return {2, wait} end
end
if cap > 0 then
  local lease = tonumber(ARGV[4])
  redis.call('ZADD', KEYS[2], now + lease, ARGV[5])
  redis.call('PEXPIRE', KEYS[2], math.ceil(lease / 1000) + 1000)
end
return {0}
";

/// Extends the lease of a place under a tenant's cap (KEYS[1], held as
/// ARGV[2]) by ARGV[1] µs from now, if it is still held. Answers {1} when
/// it was, {0} when the lease had already ended.
pub(super) const RENEW: &str = r"
local lease = tonumber(ARGV[1])
local held = redis.call('ZADD', KEYS[1], 'XX', 'CH', now + lease, ARGV[2])
redis.call('PEXPIRE', KEYS[1], math.ceil(lease / 1000) + 1000)
return {held}
";

/// The tokenless-request throttle: the source's bucket (KEYS[1], ARGV[1]
/// µs apart, ARGV[2] at once), the endpoint's ceiling of records (KEYS[2],
/// ARGV[3], ARGV[4]), and when each was last said to be exceeded (KEYS[3]
/// for the source, KEYS[4] for the endpoint). Answers {0} to answer and
/// record; {1, first} to answer without a record (saying so when first);
/// {2, µs, record} to throttle.
pub(super) const THROTTLE: &str = r"
local function first(key)
  if redis.call('SET', key, 1, 'NX', 'PX', 60000) then return 1 end
  return 0
end
local wait = take(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
if wait == 0 then
  if take(KEYS[2], tonumber(ARGV[3]), tonumber(ARGV[4])) == 0 then return {0} end
  return {1, first(KEYS[4])}
end
local record = 0
if redis.call('EXISTS', KEYS[3]) == 0 and take(KEYS[2], tonumber(ARGV[3]), tonumber(ARGV[4])) == 0 then
  record = first(KEYS[3])
end
return {2, wait, record}
";
