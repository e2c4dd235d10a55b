-- banhammer: the engine's window and decision logic for one token, applied atomically.
--
-- This is the second copy of banhammer-core's Engine (docs/scale-out.md: one round trip per
-- event needs the logic next to the data); crates/store/redis/tests/conformance.rs runs the
-- same scripts of events, fires and unbans through both and expects identical records.
--
-- Time is whole seconds. A window of w seconds ending at s is (s - w, s]. A token-scope tier
-- holds when its measure reaches its limit; a global alert when it exceeds it.
--
-- The calls (laid out by ScriptCall in script.rs, the only place that writes them):
--
--   event   KEYS  ban, events, members, distinct sets 1..D, decisions 1..T (each tier's
--                 episode: the ban for block tiers), offences
--           ARGV  'event', now, at, want_rates, count_horizon, nonce, name, token, horizon
--                 (the rules' longest window; 0 for a global metric), T, D,
--                 cap (the most members of a family a token counts; 0 when the rules have
--                 no family), family (the family's rule name when the metric is one, else ''),
--                 offence_memory (how long a ban start counts; 0: no tier escalates),
--                 then per tier: limit, window, measure (0 the events, j distinct set j),
--                                effect, policy, duration, factor, max, memory (escalate;
--                                factor 0 when the tier does not)
--                 then per distinct set: value, horizon, keep
--   fire    KEYS  ban, decision, events, offences
--           ARGV  'fire', now, want_rates, name, token, tier, limit, effect, duration, rule
--                 (the rule's own name: the family's for a member), factor, max, memory,
--                 offence_memory, reason (an operator's, kept in the ban's hash when the
--                 fire starts or extends it: bans by hand, rule `manual`; '' for none)
--   end     KEYS  decision, measure (an alert's window; for others any key of the slot)
--   finish  ARGV  verb, now, limit, window
--   unban   KEYS  ban
--           ARGV  'unban', now
--   restore KEYS  ban
--           ARGV  'restore', now, name, rule, token, tier, value, from, until, reason
--
-- name is the metric as records name it (the member for a family); token is the one counted
-- (`global` for a global metric); both escaped. Effects: 0 block, 1 notify, 2 alert. Policies:
-- 0 after_trigger, 1 after_violation.
--
-- Every call answers {passed, rate_1m, rate_10m, rate_60m, until, records...}: until is, for
-- `end`, the decision's new end when it goes on, else -1. A record is
-- "VERB|at|token|metric|tier|value|from|until|reason"; its verb says the effect and the
-- change; reason is a ban's operator's reason (escaped as names are), '' when it has none.
-- An event the engine would refuse answers {-1, reason} and changes nothing; the only reason
-- is 'too_many_members'.

local verb = ARGV[1]
local records = {}

local START_VERB = { [0] = 'BAN', [1] = 'NOTIFY', [2] = 'ALERT' }
local EXTEND_VERB = { [0] = 'EXTEND', [1] = 'NOTIFY_EXTEND' }
local END_VERB = { ['0'] = 'UNBAN', ['1'] = 'NOTIFY_END', ['2'] = 'RECOVER' }

local function record(verb_, at, token, metric, tier, value, from, until_, reason)
  records[#records + 1] = table.concat(
    { verb_, at, token, metric, tier, value, from, until_, reason or '' }, '|')
end

-- An operator's reason for the ban the call makes or carries further (the fire verb's, for a
-- ban by hand); '' for none. `hold` keeps it in the ban's hash, whose records carry it.
local REASON = ''

-- The reason kept in the episode at `key`, '' when it has none.
local function reason_of(key)
  return redis.call('HGET', key, 'reason') or ''
end

local function split(s)
  local p = {}
  for part in string.gmatch(s, '[^|]+') do p[#p + 1] = part end
  return p
end

local function reply(passed, r1, r10, r60, until_)
  local out = { passed, r1, r10, r60, until_ or -1 }
  for k = 1, #records do out[#out + 1] = records[k] end
  return out
end

local function until_of(key)
  local u = redis.call('HGET', key, 'until')
  if u then return tonumber(u) end
  return nil
end

-- An episode is a hash: from, until, rule, tier, value, effect, token, and its reaches
-- "R<n>" = "metric|tier|policy|mark|duration|value" in the order they first held (found by
-- "I<rule>|<tier>|<policy>" = n): one per rule, not per family member, as in the engine (a
-- ban can outlast the token's list of members; untrusted names must not pile up here), the
-- metric being the member whose hold set the mark.
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

-- The end of a block or notice episode at `at`, named after its furthest reach.
local function end_record(key, at, stop)
  local h = redis.call('HMGET', key, 'from', 'effect', 'token', 'rule', 'tier', 'value',
    'reason')
  local _, p = furthest(key, stop)
  local metric, tier, value = h[4], h[5], h[6]
  if p then metric, tier, value = p[1], p[2], p[6] end
  record(END_VERB[h[2]], at, h[3], metric, tier, value, h[1], at, h[7])
end

-- An alert's recovery: when its window would hold no more than its limit, from its measure.
local function recovery(measure_key, limit, window)
  local nth = redis.call('ZREVRANGE', measure_key, limit, limit, 'WITHSCORES')
  if nth[2] then return tonumber(nth[2]) + window end
  return nil
end

-- An alert's recovery at `at`, from its measure.
local function recover(key, at, measure_key, window)
  local h = redis.call('HMGET', key, 'from', 'token', 'rule', 'tier')
  local value = redis.call('ZCOUNT', measure_key, '(' .. (at - window), '+inf')
  record('RECOVER', at, h[2], h[3], h[4], value, h[1], at)
  redis.call('DEL', key)
end

-- Ends the episode at `key` if its time has come by `now`. Alerts need their measure.
-- Returns the episode's (possibly moved) until when it goes on, nil when it ended or is gone.
local function end_if_due(key, now, measure_key, limit, window)
  local u = until_of(key)
  if not u then return nil end
  if redis.call('HGET', key, 'effect') == '2' then
    local r = recovery(measure_key, limit, window)
    if r and r > u then u = r end
    if u > now then
      redis.call('HSET', key, 'until', u)
      return u
    end
    recover(key, u, measure_key, window)
    return nil
  end
  if u > now then return u end
  end_record(key, u, nil)
  redis.call('DEL', key)
  return nil
end

-- Records how far tier `tier` of `name` (a metric of rule `t.rule`) carries the episode at
-- `key` when it holds at `now` (`nth`: when its needed unit arrived; after_violation only).
local function add_reach(key, now, name, tier, t, value, nth)
  local mark, duration = now + t.duration, 0
  if t.policy == 1 then mark, duration = nth + t.window - 1, t.duration end
  local id = 'I' .. t.rule .. '|' .. tier .. '|' .. t.policy
  local n = redis.call('HGET', key, id)
  if n then
    local p = split(redis.call('HGET', key, 'R' .. n))
    -- As the engine: only a reach that goes further replaces the recorded value and member.
    if mark <= tonumber(p[4]) then return end
  else
    n = redis.call('HINCRBY', key, 'nreach', 1)
    redis.call('HSET', key, id, n)
  end
  redis.call('HSET', key, 'R' .. n,
    table.concat({ name, tier, t.policy, mark, duration, value }, '|'))
end

-- Where ban starts are remembered for tiers that escalate (set by the event and fire verbs):
-- the token's offences key and how long a start counts (0: no tier escalates).
local OFF_KEY, OFFENCE_MEMORY = nil, 0

-- `t` with its duration escalated for a repeat offender, as the engine does: the n-th ban
-- started within `memory` of earlier ones (counted before the ban's own start) lasts
-- duration * factor^(n-1), at most max, never less than duration.
local function escalated(t, ban_key, now)
  if t.effect ~= 0 or not t.factor or t.factor == 0 or not OFF_KEY then return t end
  local earlier
  if until_of(ban_key) then
    -- An active ban counts the offences noted when it started ("off": their starts): the
    -- offences key forgets them once older than every memory, however long the ban lasts.
    local from = tonumber(redis.call('HGET', ban_key, 'from'))
    local noted = redis.call('HGET', ban_key, 'off')
    if noted then
      earlier = 0
      for _, start in ipairs(split(noted)) do
        local st = tonumber(start)
        if st > from - t.memory and st < from then earlier = earlier + 1 end
      end
    else
      earlier = redis.call('ZCOUNT', OFF_KEY, '(' .. (from - t.memory), '(' .. from)
    end
  else
    earlier = redis.call('ZCOUNT', OFF_KEY, '(' .. (now - t.memory), '(' .. now)
  end
  local d = t.duration
  for _ = 1, earlier do
    d = d * t.factor
    if d >= t.max then break end
  end
  if d > t.max then d = t.max end
  if d < t.duration then d = t.duration end
  local e = {}
  for k, v in pairs(t) do e[k] = v end
  e.duration = d
  return e
end

-- A block or notify tier holds: starts its episode at `key`, or extends it.
local function hold(key, now, name, token, tier, t, value, nth)
  local before = until_of(key)
  if not before then
    redis.call('HSET', key, 'from', now, 'effect', t.effect, 'token', token, 'rule', name,
      'tier', tier, 'value', value)
  end
  add_reach(key, now, name, tier, t, value, nth)
  local e, p = furthest(key, nil)
  if before == nil then
    redis.call('HSET', key, 'until', e)
    if REASON ~= '' then redis.call('HSET', key, 'reason', REASON) end
    record(START_VERB[t.effect], now, token, name, tier, value, now, e, REASON)
    if t.effect == 0 and OFF_KEY and OFFENCE_MEMORY > 0 then
      -- The ban keeps its earlier offences; its start becomes one for later bans (as the
      -- engine's Offences).
      local earlier = redis.call('ZRANGEBYSCORE', OFF_KEY, '-inf', '(' .. now)
      redis.call('HSET', key, 'off', '|' .. table.concat(earlier, '|'))
      redis.call('ZADD', OFF_KEY, now, now)
      redis.call('ZREMRANGEBYSCORE', OFF_KEY, '-inf', now - OFFENCE_MEMORY)
      redis.call('EXPIRE', OFF_KEY, OFFENCE_MEMORY + 60)
    end
  elseif e > before then
    redis.call('HSET', key, 'until', e)
    if REASON ~= '' then redis.call('HSET', key, 'reason', REASON) end
    record(EXTEND_VERB[t.effect], now, token, p[1], p[2], p[6], redis.call('HGET', key, 'from'),
      e, reason_of(key))
  end
  -- Redis forgets the episode a day after it could matter (relative: event time may be far
  -- from Redis's own clock in a replay).
  redis.call('EXPIRE', key, math.max(e - now, 0) + 86400)
end

-- passed: false while the token's ban reaches past now.
local function passed_at(ban_key, now)
  local u = until_of(ban_key)
  if u and u > now then return 0 end
  return 1
end

local function rates(events_key, now)
  return redis.call('ZCOUNT', events_key, '(' .. (now - 60), '+inf'),
    redis.call('ZCOUNT', events_key, '(' .. (now - 600), '+inf'),
    redis.call('ZCOUNT', events_key, '(' .. (now - 3600), '+inf')
end

if verb == 'unban' then
  local now = tonumber(ARGV[2])
  if until_of(KEYS[1]) then
    -- An operator's unban ends now, whatever the reaches said.
    end_record(KEYS[1], now, nil)
    redis.call('DEL', KEYS[1])
  end
  return reply(1, 0, 0, 0, nil)
end

if verb == 'restore' then
  -- A ban a node still holds after the store lost it (restarted empty): put back as it was,
  -- unless the token is banned again already.
  local key = KEYS[1]
  local now = tonumber(ARGV[2])
  local name, rule, token, tier = ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
  local value, from, until_ = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
  if until_ > now and not until_of(key) then
    redis.call('HSET', key, 'from', from, 'effect', 0, 'token', token, 'rule', name,
      'tier', tier, 'value', value)
    add_reach(key, now, name, tier, { rule = rule, policy = 0, duration = until_ - now },
      value, now)
    redis.call('HSET', key, 'until', until_)
    local reason = ARGV[10] or ''
    if reason ~= '' then redis.call('HSET', key, 'reason', reason) end
    record('BAN', now, token, name, tier, value, from, until_, reason)
    redis.call('EXPIRE', key, until_ - now + 86400)
  end
  return reply(passed_at(key, now), 0, 0, 0, nil)
end

if verb == 'end' or verb == 'finish' then
  local now = tonumber(ARGV[2])
  local limit, window = tonumber(ARGV[3]), tonumber(ARGV[4])
  local key, measure_key = KEYS[1], KEYS[2]
  if verb == 'end' then
    return reply(1, 0, 0, 0, end_if_due(key, now, measure_key, limit, window))
  end
  local u = until_of(key)
  if not u then return reply(1, 0, 0, 0, nil) end
  if redis.call('HGET', key, 'effect') == '2' then
    local r = recovery(measure_key, limit, window) or u
    if r < u then r = u end
    recover(key, r, measure_key, window)
  else
    local e = furthest(key, now)
    end_record(key, e, now)
    redis.call('DEL', key)
  end
  return reply(1, 0, 0, 0, nil)
end

if verb == 'fire' then
  -- As the engine's fire: the tier's decision starts or extends as if its limit were reached
  -- now, to now + action_duration (after_trigger, whatever the tier's policy), value = limit.
  local ban_key, key, events_key = KEYS[1], KEYS[2], KEYS[3]
  local now = tonumber(ARGV[2])
  local want_rates = ARGV[3] == '1'
  local name, token, tier = ARGV[4], ARGV[5], tonumber(ARGV[6])
  local limit = tonumber(ARGV[7])
  local t = { effect = tonumber(ARGV[8]), policy = 0, duration = tonumber(ARGV[9]),
    rule = ARGV[10], factor = tonumber(ARGV[11]), max = tonumber(ARGV[12]),
    memory = tonumber(ARGV[13]) }
  OFF_KEY, OFFENCE_MEMORY = KEYS[4], tonumber(ARGV[14])
  -- A decision whose end has come ends first: the fire starts a new one.
  end_if_due(key, now, events_key, 0, 1)
  -- A ban by hand that starts the ban or carries it further gives it its reason.
  if t.effect == 0 then REASON = ARGV[15] or '' end
  hold(key, now, name, token, tier, escalated(t, ban_key, now), limit, now)
  local r1, r10, r60 = 0, 0, 0
  if want_rates then r1, r10, r60 = rates(events_key, now) end
  return reply(passed_at(ban_key, now), r1, r10, r60, nil)
end

if verb ~= 'event' then
  return redis.error_reply('banhammer: unknown verb ' .. tostring(verb))
end

-- EVENT
local now = tonumber(ARGV[2])
local at = tonumber(ARGV[3])
local want_rates = ARGV[4] == '1'
local count_horizon = tonumber(ARGV[5])
local nonce = ARGV[6]
local name, token = ARGV[7], ARGV[8]
local horizon = tonumber(ARGV[9])
local T, D = tonumber(ARGV[10]), tonumber(ARGV[11])
local cap, family = tonumber(ARGV[12]), ARGV[13]
OFFENCE_MEMORY = tonumber(ARGV[14])
local rule_name = name
if family ~= '' then rule_name = family end
local base = 15
local tiers = {}
for i = 1, T do
  local o = base + (i - 1) * 9
  tiers[i] = {
    limit = tonumber(ARGV[o]), window = tonumber(ARGV[o + 1]), measure = tonumber(ARGV[o + 2]),
    effect = tonumber(ARGV[o + 3]), policy = tonumber(ARGV[o + 4]),
    duration = tonumber(ARGV[o + 5]), rule = rule_name,
    factor = tonumber(ARGV[o + 6]), max = tonumber(ARGV[o + 7]), memory = tonumber(ARGV[o + 8]),
  }
end
base = base + T * 9
local distincts = {}
for j = 1, D do
  local o = base + (j - 1) * 3
  distincts[j] = { value = ARGV[o], horizon = tonumber(ARGV[o + 1]), keep = tonumber(ARGV[o + 2]) }
end
local ban_key, events_key, members_key = KEYS[1], KEYS[2], KEYS[3]
local function distinct_key(j) return KEYS[3 + j] end
local function decision_key(i) return KEYS[3 + D + i] end
OFF_KEY = KEYS[3 + D + T + 1]
local function measure_key(t)
  if t.measure > 0 then return distinct_key(t.measure) end
  return events_key
end

-- 0. The family members this token counts, as the engine keeps them: at most `cap` per family,
--    forgotten with the token's windows once it has been idle for the rules' longest window
--    ("@" the token's last event; "m|<member>" each member; "n|<family>" how many). A new
--    member beyond the cap is refused before anything changes, as the engine refuses it.
--    Only rule sets with a family pay for this.
if cap > 0 and horizon > 0 then
  local seen = redis.call('HGET', members_key, '@')
  local forgotten = (not seen) or tonumber(seen) + horizon <= now
  local new_member = family ~= '' and
    (forgotten or redis.call('HEXISTS', members_key, 'm|' .. name) == 0)
  if new_member and not forgotten
    and tonumber(redis.call('HGET', members_key, 'n|' .. family) or '0') >= cap then
    return { -1, 'too_many_members' }
  end
  if forgotten then redis.call('DEL', members_key) end
  if new_member then
    redis.call('HSET', members_key, 'm|' .. name, 1)
    redis.call('HINCRBY', members_key, 'n|' .. family, 1)
  end
  redis.call('HSET', members_key, '@', now)
  redis.call('EXPIRE', members_key, horizon + 60)
end

-- 1. This token's decisions whose time has come end first (an end at u comes before the
--    events at u are counted).
end_if_due(ban_key, now, events_key, 0, 1)
for i = 1, T do
  local t = tiers[i]
  if t.effect ~= 0 then end_if_due(decision_key(i), now, measure_key(t), t.limit, t.window) end
end

-- The engine keeps a copy of the token's ban beside its windows ("cu" its until, "ct" how far
-- its after_trigger reaches go, "cs" the token's last event), refreshed only when an event's
-- block tier holds, and forgotten with the token's windows once the token has been idle for
-- the rules' longest window. With it, a block tier that cannot carry the ban further is not
-- even measured; that changes which reach an end names when two reach equally far, so the
-- copy is kept here too, field for field.
local cached_until, cached_trigger = nil, nil
if horizon > 0 then
  local c = redis.call('HMGET', ban_key, 'cu', 'ct', 'cs')
  if c[1] then
    if tonumber(c[3]) + horizon <= now then
      redis.call('HDEL', ban_key, 'cu', 'ct', 'cs')
    else
      cached_until, cached_trigger = tonumber(c[1]), tonumber(c[2])
      redis.call('HSET', ban_key, 'cs', now)
    end
  end
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

-- 3. The tiers that hold now start or extend their decisions, in tier order.
local ban_moved = false
for i = 1, T do
  local t = escalated(tiers[i], ban_key, now)
  local tier = i - 1
  local need = t.limit
  if t.effect == 2 then need = t.limit + 1 end
  local wkey = measure_key(t)
  local nth = {}
  local unchanged = cached_until and cached_until > now and t.effect == 0 and t.policy == 0
    and now + t.duration <= cached_trigger
  if not unchanged then
    nth = redis.call('ZREVRANGE', wkey, need - 1, need - 1, 'WITHSCORES')
  end
  if nth[2] and tonumber(nth[2]) > now - t.window then
    ban_moved = ban_moved or t.effect == 0
    nth = tonumber(nth[2])
    local value = redis.call('ZCOUNT', wkey, '(' .. (now - t.window), '+inf')
    local key = decision_key(i)
    if t.effect == 2 then
      -- An alert lasts until its measure drops back to its limit: nothing to extend.
      if not until_of(key) then
        local u = nth + t.window
        redis.call('HSET', key, 'from', now, 'until', u, 'effect', 2, 'token', token,
          'rule', name, 'tier', tier, 'value', value)
        record('ALERT', now, token, name, tier, value, now, u)
      end
    else
      hold(key, now, name, token, tier, t, value, nth)
    end
  end
end

-- The engine refreshes its copy of the ban when a block tier held.
if ban_moved and horizon > 0 and until_of(ban_key) then
  local n = tonumber(redis.call('HGET', ban_key, 'nreach') or '0')
  local trigger = nil
  for k = 1, n do
    local r = redis.call('HGET', ban_key, 'R' .. k)
    if r then
      local p = split(r)
      if p[3] == '0' and (trigger == nil or tonumber(p[4]) > trigger) then trigger = tonumber(p[4]) end
    end
  end
  if trigger then
    redis.call('HSET', ban_key, 'cu', until_of(ban_key), 'ct', trigger, 'cs', now)
  else
    -- No after_trigger reach: the copy cannot skip anything.
    redis.call('HSET', ban_key, 'cu', until_of(ban_key), 'ct', now - 1, 'cs', now)
  end
end

-- 4. The answer.
local r1, r10, r60 = 0, 0, 0
if want_rates then r1, r10, r60 = rates(events_key, now) end
return reply(passed_at(ban_key, now), r1, r10, r60, nil)
