// An oidc-provider adapter on Redis (ioredis), written after the Redis example the oidc-provider
// repository documents (example/adapters/redis.js): each model is one key `Model:id` with the
// model's TTL; one-time models (codes, refresh tokens) are hashes so that `consume` marks a field;
// every key issued under a grant is appended to a list `grant:id` so that revoking the grant deletes
// them all; `uid:…` and `userCode:…` index keys. It is what lets several oidc-provider processes
// share state (bench/compare/side-by-side.sh's cluster phase); nothing here is tuned.
//
//   redisAdapter('redis://127.0.0.1:6379', 'oidc-compare-1234:')  // → the adapter class

import Redis from 'ioredis';

const CONSUMABLE = new Set([
  'AuthorizationCode',
  'RefreshToken',
  'DeviceCode',
  'BackchannelAuthenticationRequest',
]);

export function redisAdapter(url, keyPrefix) {
  const client = new Redis(url, { keyPrefix });
  const grantKey = (id) => `grant:${id}`;
  const uidKey = (uid) => `uid:${uid}`;
  const userCodeKey = (code) => `userCode:${code}`;

  return class RedisAdapter {
    constructor(name) {
      this.name = name;
      this.consumable = CONSUMABLE.has(name);
    }

    key(id) {
      return `${this.name}:${id}`;
    }

    async upsert(id, payload, expiresIn) {
      const key = this.key(id);
      const json = JSON.stringify(payload);
      const multi = client.multi();
      if (this.consumable) {
        multi.hset(key, 'payload', json);
      } else {
        multi.set(key, json);
      }
      if (expiresIn) multi.expire(key, expiresIn);
      if (payload.grantId) {
        // The list holds unprefixed keys: `del` adds the prefix again when the grant is revoked.
        const list = grantKey(payload.grantId);
        multi.rpush(list, key);
        const ttl = await client.ttl(list);
        if (expiresIn > ttl) multi.expire(list, expiresIn);
      }
      if (payload.userCode) {
        multi.set(userCodeKey(payload.userCode), id);
        if (expiresIn) multi.expire(userCodeKey(payload.userCode), expiresIn);
      }
      if (payload.uid) {
        multi.set(uidKey(payload.uid), id);
        if (expiresIn) multi.expire(uidKey(payload.uid), expiresIn);
      }
      await multi.exec();
    }

    async find(id) {
      if (!id) return undefined;
      if (this.consumable) {
        const hash = await client.hgetall(this.key(id));
        if (!hash || !hash.payload) return undefined;
        const { payload, ...rest } = hash;
        const found = JSON.parse(payload);
        if (rest.consumed) found.consumed = Number(rest.consumed);
        return found;
      }
      const data = await client.get(this.key(id));
      return data ? JSON.parse(data) : undefined;
    }

    async findByUid(uid) {
      return this.find(await client.get(uidKey(uid)));
    }

    async findByUserCode(userCode) {
      return this.find(await client.get(userCodeKey(userCode)));
    }

    async destroy(id) {
      await client.del(this.key(id));
    }

    async revokeByGrantId(grantId) {
      const list = grantKey(grantId);
      const keys = await client.lrange(list, 0, -1);
      const multi = client.multi();
      for (const key of keys) multi.del(key);
      multi.del(list);
      await multi.exec();
    }

    async consume(id) {
      await client.hset(this.key(id), 'consumed', Math.floor(Date.now() / 1000));
    }
  };
}
