-- Signing algorithms per client, and one next key per algorithm.

-- One next key per algorithm, as there is one current key: when two instances create a
-- next key at the same moment, one insert fails and that instance reloads the winner's.
-- Duplicates left by that race before this index existed go first, keeping the oldest (a
-- next key has never signed anything, so no token depends on it).
delete from signing_keys
where state = 'next'
  and exists (
    select 1 from signing_keys o
    where o.alg = signing_keys.alg and o.state = 'next'
      and (o.created_at < signing_keys.created_at
           or (o.created_at = signing_keys.created_at and o.kid < signing_keys.kid))
  );
create unique index signing_keys_one_next_idx on signing_keys (alg) where state = 'next';

-- OpenID Connect Dynamic Client Registration §2: the algorithm ID tokens for the client
-- are signed with; RS256 when not set.
alter table clients add column id_token_signed_response_alg text not null default 'RS256';
