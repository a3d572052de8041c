###
### ejabberd configuration for syncside (ejabberd 23.01).
###
### Rendered by scripts/ejabberd.sh: each ${...} placeholder is replaced by the
### environment variable of that name (see the top of that script). Anything
### else is plain ejabberd YAML, so pieces can be copied into a production
### configuration as they are.
###
### This is a development/test setup: every listener is bound to loopback,
### c2s runs without TLS (no certificate is configured) and the HTTP API
### trusts loopback without authentication. Do not expose it.
###

hosts:
  - "${XMPP_DOMAIN}"

loglevel: info
log_rotate_count: 1
log_rotate_size: 10485760

## Internal accounts. Storage: Mnesia in the instance's spool dir, or PostgreSQL
## when EJABBERD_SQL is set (scripts/ejabberd.sh renders the block below).
## Use SQL for volume: Mnesia's disc-only MAM tables grow and slow down fast.
auth_method: internal
auth_password_format: scram
${EJABBERD_STORAGE}

## No certificate: c2s offers no STARTTLS, so clients connect in plain text
## on loopback. (Offering STARTTLS with a self-signed certificate makes
## @xmpp/client fail unless it is told to trust it.)
listen:
  -
    port: ${EJABBERD_C2S_PORT}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    backlog: 128
    max_stanza_size: 262144
    shaper: c2s_shaper
    access: c2s
    starttls: false
  -
    port: ${EJABBERD_HTTP_PORT}
    ip: "127.0.0.1"
    module: ejabberd_http
    backlog: 128
    request_handlers:
      /api: mod_http_api
  -
    ## The push component (XEP-0357 app server) connects here.
    port: ${EJABBERD_COMPONENT_PORT}
    ip: "127.0.0.1"
    module: ejabberd_service
    hosts:
      "push.${XMPP_DOMAIN}":
        password: "${PUSH_COMPONENT_SECRET}"

## Passwords over plain text are acceptable on loopback only; SCRAM is
## still what clients negotiate.
disable_sasl_mechanisms:
  - "digest-md5"
  - "x-oauth2"

s2s_access: none

## In-band registration on loopback without the default 600 s throttle
## between two registrations from one IP.
registration_timeout: infinity

acl:
  local:
    user_regexp: ""
  loopback:
    ip:
      - 127.0.0.0/8
      - ::1/128

access_rules:
  local:
    allow: local
  c2s:
    deny: blocked
    allow: all
  trusted_network:
    allow: loopback
  register:
    allow: all

api_permissions:
  "console commands":
    from:
      - ejabberd_ctl
    who: all
    what: "*"
  "loopback http api":
    from:
      - mod_http_api
    who:
      ip: 127.0.0.1/8
    what:
      - register
      - unregister
      - registered_users
      - check_account
      - change_password
      - send_message
      - send_stanza
      - status
      - connected_users
      - connected_users_number
      - kick_session
      - get_offline_count

shaper:
  normal:
    rate: 3000
    burst_size: 20000
  fast: 200000

shaper_rules:
  max_user_sessions: 10
  max_user_offline_messages: 5000
  c2s_shaper: fast

modules:
  mod_admin_extra: {}
  ## XEP-0191 blocking, as Debian's default configuration loads it: a message
  ## its recipient blocked is stored on the sender's side only.
  mod_blocking: {}
  mod_caps: {}
  mod_carboncopy: {}
  mod_client_state: {}
  mod_disco: {}
  mod_mam:
    ## Archive every one-to-one message of every account; the observer
    ## account must archive all the copies mod_syncside sends it.
    default: always
    assume_mam_usage: true
  ## Also keeps the observer's copies that its archive failed to store
  ## while syncside is away (see mod_syncside).
  mod_offline:
    access_max_user_messages: max_user_offline_messages
  mod_ping: {}
  mod_privacy: {}
  ## XEP-0357 push via syncside's app server (the push.* component above).
  ## The body stays out of the publish: syncside reads the message from its
  ## own store and sends it encrypted to the phone.
  mod_push:
    include_body: false
  mod_push_keepalive: {}
  mod_register:
    ## No welcome_message (off by default): it would be one more message.
    ip_access: trusted_network
  mod_roster: {}
  mod_stream_mgmt:
    resend_on_timeout: if_offline
  mod_version:
    show_os: false
  ## Copies every one-to-one message to the observer account (see
  ## ejabberd/mod_syncside.erl). Needs mod_mam.
  mod_syncside:
    observer: "${OBSERVER_JID}"
