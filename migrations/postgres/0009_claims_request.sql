-- The claims a `claims` request parameter asked for (OpenID Connect Core §5.5), beyond
-- what the scope releases: {"id_token": [names], "userinfo": [names]}. Kept with the code
-- and, once it is redeemed, with the refresh family; null when none were asked for.
alter table authorization_codes add column claims jsonb;
alter table refresh_families add column claims jsonb;
