-- banhammer: the engine's window and decision logic for one token, applied atomically.
--
-- This is the second copy of banhammer-core's Engine (docs/scale-out.md: one round trip per
-- event needs the logic next to the data); crates/store/redis/tests/conformance.rs replays
-- the same event scripts through both and expects identical decisions and stats.
--
-- Time is whole seconds. A window of w seconds ending at s is (s - w, s]. A token-scope tier
-- holds when its measure reaches its limit; a global alert when it exceeds it.
--
-- ARGV[1] is the mode:
--   "event"  one event; ends this token's due decisions first.  (see EVENT below)
--   "end"    ends one decision if it is due (the sweeper).       (see END below)
--   "finish" ends one decision where it would with the clock stopped at now.
-- Every mode returns {passed, rate_1m, rate_10m, rate_60m, until_or_-1, records...}. A record
-- is "VERB|at|token|metric|tier|value|from|until|effect" (effect 0 block, 1 notify, 2 alert).

local mode = ARGV[1]
local records = {}

local function record(verb, at, token, metric, tier, value, from, until_, effect)
  records[#records + 1] = table.concat(
    { verb, at, token, metric, tier, value, from, until_, effect }, '|')
end

local function split(s)
  local p = {}
  for part in string.gmatch(s, '[^|]+') do p[#p + 1] = part end
  return p
end

-- An episode is a hash: from, until, rule, tier, value, effect, token, and its reaches
-- "R<n>" = "metric|tier|policy|mark|duration|value" in the order they first held.
-- after_trigger: the mark is the end. after_violation: the mark is the last holding second,
-- and the end is mark + duration (with the mark cut at `stop` when the clock stops).
local function reach_end(p, stop)
  local policy, mark, duration = tonumber(p[3]), tonumber(p[4]), tonumber(p[5])
  if policy == 1 then
    if stop and stop < mark then mark = stop end
    return mark + duration
  end
  return mark
end

-- The reach that ends last (the last of equals, as the engine's max_by_key): end, parts.
local function furthest(key, stop)
  local n = tonumber(redis.call('HGET', key, 'nreach') or '0')
  local best, best_p = nil, nil
  for k = 1, n do
    local r = redis.call('HGET', key, 'R' .. k)
    if r then
      local p = split(r)
      local e = reach_end(p, stop)
      if best == nil or e >= best then best, best_p = e, p end
    end
  end
  return best, best_p
end

local function until_of(key)
  local u = redis.call('HGET', key, 'until')
  if u then return tonumber(u) end
  return nil
end

local END_VERB = { ['0'] = 'UNBAN', ['1'] = 'NOTIFY_END', ['2'] = 'RECOVER' }

-- The end of a block or notice episode at `at`, named after its furthest reach.
local function end_record(key, at, stop)
  local h = redis.call('HMGET', key, 'from', 'effect', 'token', 'rule', 'tier', 'value')
  local _, p = furthest(key, stop)
  local metric, tier, value = h[4], h[5], h[6]
  if p then metric, tier, value = p[1], p[2], p[6] end
  record(END_VERB[h[2]], at, h[3], metric, tier, value, h[1], at, h[2])
end

-- An alert's recovery: when the window would hold no more than its limit, from its events.
local function recovery(events_key, limit, window)
  local nth = redis.call('ZREVRANGE', events_key, limit, limit, 'WITHSCORES')
  if nth[2] then return tonumber(nth[2]) + window end
  return nil
end

-- Ends the episode at `key` if its time has come by `now`. Alerts need their window.
-- Returns the episode's (possibly moved) until when it goes on, nil when it ended or is gone.
local function end_if_due(key, now, events_key, limit, window)
  local u = until_of(key)
  if not u then return nil end
  local effect = redis.call('HGET', key, 'effect')
  if effect == '2' then
    local r = recovery(events_key, limit, window)
    if r and r > u then u = r end
    if u > now then
      redis.call('HSET', key, 'until', u)
      return u
    end
    local h = redis.call('HMGET', key, 'from', 'token', 'rule', 'tier')
    local value = redis.call('ZCOUNT', events_key, '(' .. (u - window), '+inf')
    record('RECOVER', u, h[2], h[3], h[4], value, h[1], u, '2')
    redis.call('DEL', key)
    return nil
  end
  if u > now then return u end
  end_record(key, u, nil)
  redis.call('DEL', key)
  return nil
end

local function reply(passed, r1, r10, r60, until_)
  local out = { passed, r1, r10, r60, until_ or -1 }
  for k = 1, #records do out[#out + 1] = records[k] end
  return out
end

if mode == 'unban' then
  -- KEYS[1] the token's ban. ARGV: mode, now. Ends it now, if any.
  local now = tonumber(ARGV[2])
  if until_of(KEYS[1]) then
    end_record(KEYS[1], now, nil)
    local r = records[1]
    -- An operator's unban ends now, whatever the reaches said.
    local p = split(r)
    p[8] = now
    records[1] = table.concat(p, '|')
    redis.call('DEL', KEYS[1])
  end
  return reply(1, 0, 0, 0, nil)
end

if mode == 'end' or mode == 'finish' then
  -- KEYS[1] the episode, KEYS[2] its metric's events (alerts only; else any key of the slot)
  -- ARGV: mode, now, limit, window
  local now = tonumber(ARGV[2])
  local limit, window = tonumber(ARGV[3]), tonumber(ARGV[4])
  if mode == 'end' then
    return reply(1, 0, 0, 0, end_if_due(KEYS[1], now, KEYS[2], limit, window))
  end
  local u = until_of(KEYS[1])
  if not u then return reply(1, 0, 0, 0, nil) end
  if redis.call('HGET', KEYS[1], 'effect') == '2' then
    local r = recovery(KEYS[2], limit, window) or u
    if r < u then r = u end
    local h = redis.call('HMGET', KEYS[1], 'from', 'token', 'rule', 'tier')
    local value = redis.call('ZCOUNT', KEYS[2], '(' .. (r - window), '+inf')
    record('RECOVER', r, h[2], h[3], h[4], value, h[1], r, '2')
  else
    local e = furthest(KEYS[1], now)
    end_record(KEYS[1], e, now)
  end
  redis.call('DEL', KEYS[1])
  return reply(1, 0, 0, 0, nil)
end

-- EVENT
-- KEYS[1]  the token's ban (hash)                      bh:{token}:ban
-- KEYS[2]  the metric's events (zset, score = second)   bh:{token}:w:<metric>
-- KEYS[3 .. 2+D]      distinct windows (zset, member = value, score = last seen)
-- KEYS[3+D .. 2+D+T]  per-tier episodes for notices and alerts (hash)
-- ARGV: "event", now, at, want_rates, count_horizon, nonce, T, D, metric, token,
--       then per tier: limit, window, kind (0 count, 1 distinct), distinct index (1-based),
--                      effect (0 block, 1 notify, 2 alert), policy (0 trigger, 1 violation),
--                      duration
--       then per distinct window: value, horizon, keep
local now = tonumber(ARGV[2])
local at = tonumber(ARGV[3])
local want_rates = ARGV[4] == '1'
local count_horizon = tonumber(ARGV[5])
local nonce = ARGV[6]
local T, D = tonumber(ARGV[7]), tonumber(ARGV[8])
local metric, token = ARGV[9], ARGV[10]
local base = 11
local tiers = {}
for i = 1, T do
  local o = base + (i - 1) * 7
  tiers[i] = {
    limit = tonumber(ARGV[o]), window = tonumber(ARGV[o + 1]), kind = tonumber(ARGV[o + 2]),
    dindex = tonumber(ARGV[o + 3]), effect = tonumber(ARGV[o + 4]), policy = tonumber(ARGV[o + 5]),
    duration = tonumber(ARGV[o + 6]),
  }
end
base = base + T * 7
local distincts = {}
for j = 1, D do
  local o = base + (j - 1) * 3
  distincts[j] = { value = ARGV[o], horizon = tonumber(ARGV[o + 1]), keep = tonumber(ARGV[o + 2]) }
end
local ban_key, events_key = KEYS[1], KEYS[2]
local function distinct_key(j) return KEYS[2 + j] end
local function episode_key(i) return KEYS[2 + D + i] end

-- 1. This token's decisions whose time has come end first (an end at u comes before the
--    events at u are counted).
end_if_due(ban_key, now, events_key, 0, 0)
for i = 1, T do
  local t = tiers[i]
  if t.effect ~= 0 then end_if_due(episode_key(i), now, events_key, t.limit, t.window) end
end

-- 2. Count the event where it belongs, unless it is older than every window.
if at > now - count_horizon then
  redis.call('ZADD', events_key, at, at .. ':' .. nonce)
end
redis.call('ZREMRANGEBYSCORE', events_key, '-inf', now - count_horizon)
redis.call('EXPIRE', events_key, count_horizon + 60)
for j = 1, D do
  local d = distincts[j]
  local key = distinct_key(j)
  if at > now - d.horizon then
    local seen = redis.call('ZSCORE', key, d.value)
    if (not seen) or tonumber(seen) < at then redis.call('ZADD', key, at, d.value) end
    -- Keep the latest `keep` values: older ones can never matter again.
    local n = redis.call('ZCARD', key)
    if n > d.keep then redis.call('ZREMRANGEBYRANK', key, 0, n - d.keep - 1) end
  end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - d.horizon)
  redis.call('EXPIRE', key, d.horizon + 60)
end

-- 3. The tiers that hold now start or extend their decisions.
local function add_reach(key, tier, t, value, nth)
  local mark, duration = now + t.duration, 0
  if t.policy == 1 then mark, duration = nth + t.window - 1, t.duration end
  local id = 'I' .. metric .. '|' .. tier .. '|' .. t.policy
  local n = redis.call('HGET', key, id)
  if n then
    local p = split(redis.call('HGET', key, 'R' .. n))
    -- As the engine: only a reach that goes further replaces the recorded value.
    if mark <= tonumber(p[4]) then return end
  else
    n = redis.call('HINCRBY', key, 'nreach', 1)
    redis.call('HSET', key, id, n)
  end
  redis.call('HSET', key, 'R' .. n,
    table.concat({ metric, tier, t.policy, mark, duration, value }, '|'))
end

local started = nil
for i = 1, T do
  local t = tiers[i]
  local tier = i - 1
  local need = t.limit
  if t.effect == 2 then need = t.limit + 1 end
  local wkey = events_key
  if t.kind == 1 then wkey = distinct_key(t.dindex) end
  local nth = redis.call('ZREVRANGE', wkey, need - 1, need - 1, 'WITHSCORES')
  if nth[2] and tonumber(nth[2]) > now - t.window then
    nth = tonumber(nth[2])
    local value = redis.call('ZCOUNT', wkey, '(' .. (now - t.window), '+inf')
    if t.effect == 2 then
      local key = episode_key(i)
      if not until_of(key) then
        local u = nth + t.window
        redis.call('HSET', key, 'from', now, 'until', u, 'effect', 2, 'token', token,
          'rule', metric, 'tier', tier, 'value', value)
        record('ALERT', now, token, metric, tier, value, now, u, '2')
        started = started or u
      end
    else
      local key, start_verb, extend_verb = ban_key, 'BAN', 'EXTEND'
      if t.effect == 1 then key, start_verb, extend_verb = episode_key(i), 'NOTIFY', 'NOTIFY_EXTEND' end
      local before = until_of(key)
      if not before then
        redis.call('HSET', key, 'from', now, 'effect', t.effect, 'token', token, 'rule', metric,
          'tier', tier, 'value', value)
      end
      add_reach(key, tier, t, value, nth)
      local e, p = furthest(key, nil)
      if before == nil then
        redis.call('HSET', key, 'until', e)
        record(start_verb, now, token, metric, tier, value, now, e, t.effect)
        started = started or e
      elseif e > before then
        redis.call('HSET', key, 'until', e)
        record(extend_verb, now, token, p[1], p[2], p[6], redis.call('HGET', key, 'from'), e, t.effect)
      end
      -- Redis forgets the episode a day after it could matter (relative: event time may be
      -- far from Redis's own clock in a replay).
      redis.call('EXPIRE', key, math.max(e - now, 0) + 86400)
    end
  end
end

-- 4. The answer.
local passed = 1
local u = until_of(ban_key)
if u and u > now then passed = 0 end
local r1, r10, r60 = 0, 0, 0
if want_rates then
  r1 = redis.call('ZCOUNT', events_key, '(' .. (now - 60), '+inf')
  r10 = redis.call('ZCOUNT', events_key, '(' .. (now - 600), '+inf')
  r60 = redis.call('ZCOUNT', events_key, '(' .. (now - 3600), '+inf')
end
return reply(passed, r1, r10, r60, started)
