"""OAuth 2.0 for mailboxes: authorization code with PKCE, stored tokens, refresh."""
