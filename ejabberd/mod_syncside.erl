%%%----------------------------------------------------------------------
%%% mod_syncside: copies every one-to-one message routed by ejabberd to an
%%% "observer" account, so that syncside can ingest conversation events
%%% from that account's own MAM archive.
%%%
%%% Why a module at all: ejabberd's MAM only archives messages with a body
%%% or a <store/> hint, an admin cannot read other users' archives over
%%% XMPP, and mod_service_log drops stanzas while its component is away.
%%% A copy with a <store/> hint, addressed to one ordinary account, lands
%%% durably in that account's archive whether syncside is connected or not.
%%%
%%% Copy format (the syncside parser depends on it; change both together):
%%%
%%%   <message from="DOMAIN" to="OBSERVER" id="COPY-ID" type="normal">
%%%     <forwarded xmlns="urn:xmpp:forward:0">
%%%       <delay xmlns="urn:xmpp:delay" stamp="SERVER-TIME"/>
%%%       <message xmlns="jabber:client" ...>original stanza</message>
%%%     </forwarded>
%%%     <tap xmlns="urn:syncside:tap:0" from-local="true|false"
%%%          to-local="true|false" [sender-archive-id="ID"]/>
%%%     <store xmlns="urn:xmpp:hints"/>
%%%     <offline xmlns="http://jabber.org/protocol/offline"/>
%%%   </message>
%%%
%%% When ejabberd removes an account (ejabberdctl unregister, in-band
%%% cancel, the admin API), the observer gets a notice the same way, archived
%%% first, so that syncside erases that account's mirror in order with the
%%% copies around it, even when it reads the notice from the archive later:
%%%
%%%   <message from="DOMAIN" to="OBSERVER" id="COPY-ID" type="normal">
%%%     <removed xmlns="urn:syncside:tap:0" jid="USER@DOMAIN"
%%%              stamp="SERVER-TIME"/>
%%%     <store xmlns="urn:xmpp:hints"/>
%%%     <offline xmlns="http://jabber.org/protocol/offline"/>
%%%   </message>
%%%
%%% On the wire the type attribute is absent: ejabberd's codec omits the
%%% default type "normal". Element order inside <forwarded/> is not fixed
%%% (the codec writes <delay/> after the message).
%%%
%%% Configuration:
%%%
%%%   modules:
%%%     mod_syncside:
%%%       observer: "observer@example.org"
%%%----------------------------------------------------------------------
-module(mod_syncside).

-behaviour(gen_mod).

-export([start/2, stop/1, reload/3, depends/2,
         mod_opt_type/1, mod_options/1, mod_doc/0]).
%% Hook callbacks.
-export([filter_packet/1, user_send_packet/1, remove_user/2]).

-include("xmpp.hrl").
-include("logger.hrl").

-define(NS_TAP, <<"urn:syncside:tap:0">>).
-define(NS_CARBONS, <<"urn:xmpp:carbons:2">>).
-define(NS_MUC_USER_X, <<"http://jabber.org/protocol/muc#user">>).
-define(MAM_NAMESPACES, [<<"urn:xmpp:mam:2">>, <<"urn:xmpp:mam:1">>,
                         <<"urn:xmpp:mam:tmp">>]).

%% Packet meta keys owned by this module.
%% Set on the original once it has been copied: stream management re-routes
%% unacknowledged stanzas (same record, same meta) when a session dies, and
%% such a resend must not produce a second copy. The <delay reason="Resent">
%% element cannot be trusted for this: a client may send one itself.
-define(META_COPIED, syncside_copied).
%% The sender-side MAM archive id, saved before mod_mam deletes its own meta.
-define(META_SENDER_ARCHIVE_ID, syncside_sender_archive_id).
-define(PDICT_SENDER_ARCHIVE_ID, mod_syncside_sender_archive_id).

%% mod_mam assigns the sender-side archive id (meta `stanza_id`) in
%% user_send_packet at priority 88 and deletes it again at 500, before the
%% packet is routed. Running in between is the only way to see it.
-define(USER_SEND_PRIORITY, 100).
%% Late, so that filters which drop a packet run before it is copied.
-define(FILTER_PRIORITY, 100).
%% ejabberd_auth runs remove_user once the account is gone from the auth
%% backend; mod_offline and mod_mam clean up at 50. The order among them does
%% not matter: the notice goes to the observer's archive, not the user's.
-define(REMOVE_USER_PRIORITY, 50).

%%%===================================================================
%%% gen_mod callbacks
%%%===================================================================
start(Host, _Opts) ->
    %% filter_packet is a global hook (it runs once per routed stanza,
    %% whatever the host); adding the same callback twice is a no-op.
    ejabberd_hooks:add(filter_packet, ?MODULE, filter_packet,
                       ?FILTER_PRIORITY),
    ejabberd_hooks:add(user_send_packet, Host, ?MODULE, user_send_packet,
                       ?USER_SEND_PRIORITY),
    ejabberd_hooks:add(remove_user, Host, ?MODULE, remove_user,
                       ?REMOVE_USER_PRIORITY),
    Observer = observer(Host),
    case lists:member(Observer#jid.lserver, ejabberd_option:hosts()) of
        true -> ok;
        false ->
            ?WARNING_MSG("mod_syncside on ~ts: observer ~ts is not an "
                         "account of a host served by this server; copies "
                         "will not be archived here",
                         [Host, jid:encode(Observer)])
    end,
    ok.

stop(Host) ->
    ejabberd_hooks:delete(user_send_packet, Host, ?MODULE, user_send_packet,
                          ?USER_SEND_PRIORITY),
    ejabberd_hooks:delete(remove_user, Host, ?MODULE, remove_user,
                          ?REMOVE_USER_PRIORITY),
    %% Keep the global hook while another host still uses the module.
    case gen_mod:is_loaded_elsewhere(Host, ?MODULE) of
        true -> ok;
        false ->
            ejabberd_hooks:delete(filter_packet, ?MODULE, filter_packet,
                                  ?FILTER_PRIORITY)
    end,
    ok.

reload(_Host, _NewOpts, _OldOpts) ->
    %% The observer is read from the options on every packet.
    ok.

%% Without MAM the copies would not be durable (and the <offline/> element
%% keeps them out of offline storage), so the module is pointless without it.
%% mod_offline keeps the copies the archive failed to take while syncside is
%% away (see deliver/1); without it they are lost (but logged).
depends(_Host, _Opts) ->
    [{mod_mam, hard}, {mod_offline, soft}].

mod_opt_type(observer) ->
    econf:jid().

%% `observer` has no default: it is required.
mod_options(_Host) ->
    [observer].

mod_doc() ->
    #{desc =>
          [<<"Copies every one-to-one message (type chat or normal) routed "
             "by the server, where a local user is a party, to an observer "
             "account, wrapped in an XEP-0297 <forwarded/> element with a "
             "<store/> hint so that the observer's MAM archive keeps it.">>,
           <<"Not copied: groupchat, error and headline messages, carbons, "
             "MAM results, MUC private messages, messages flushed from "
             "offline storage, stream management resends, and the "
             "observer's own traffic. Requires mod_mam.">>,
           <<"A copy the archive fails to store is logged as an error and "
             "sent to the observer without the offline marker: live while "
             "it is online, else into its offline storage (mod_offline).">>],
      opts =>
          [{observer,
            #{value => "JID",
              desc =>
                  <<"Bare JID of the account that receives the copies. "
                    "Required.">>}}],
      example =>
          ["modules:",
           "  mod_mam:",
           "    default: always",
           "  mod_syncside:",
           "    observer: \"observer@example.org\""]}.

%%%===================================================================
%%% Hooks
%%%===================================================================

%% Runs after mod_mam stored the message in the sender's archive (88) and
%% before it strips its meta (500): keep the archive id for the copy.
%% Only messages mod_mam actually archived have one (bodyless markers,
%% reactions and call signals without a <store/> hint do not).
%%
%% The id also goes to a one-slot process dictionary entry: the HTTP API
%% commands (send_message, send_stanza) run this hook but then route the
%% packet as it was before the hook, losing the meta. Hook and routing run
%% in the same process, so filter_packet can pick the id up there.
-spec user_send_packet({stanza(), ejabberd_c2s:state()}) ->
          {stanza(), ejabberd_c2s:state()}.
user_send_packet({#message{meta = #{mam_archived := true,
                                    stanza_id := ID}} = Msg,
                  C2SState}) when is_integer(ID) ->
    BinID = integer_to_binary(ID),
    put(?PDICT_SENDER_ARCHIVE_ID, {pending_key(Msg), BinID}),
    {xmpp:put_meta(Msg, ?META_SENDER_ARCHIVE_ID, BinID), C2SState};
user_send_packet(Acc) ->
    Acc.

-spec filter_packet(stanza() | drop) -> stanza() | drop.
filter_packet(#message{type = Type} = Msg)
  when Type == chat; Type == normal ->
    %% Never let a bug here stop or alter message routing.
    try maybe_copy(Msg)
    catch Class:Reason:Stack ->
            ?ERROR_MSG("mod_syncside failed to copy a message: ~p~n~p",
                       [{Class, Reason}, Stack]),
            Msg
    end;
filter_packet(Acc) ->
    Acc.

%% An account was removed: tell syncside, durably and in order with the
%% copies, so that it erases the account's mirror, tokens and push devices
%% (a JID registered again is a new owner, who must not read the old one's
%% conversations). The notice takes the copies' path: archived first, then
%% routed to the observer if it is online.
-spec remove_user(binary(), binary()) -> ok.
remove_user(LUser, LServer) ->
    try notify_removed(LUser, LServer)
    catch Class:Reason:Stack ->
            ?ERROR_MSG("mod_syncside failed to report the removal of ~ts@~ts: "
                       "~p~n~p", [LUser, LServer, {Class, Reason}, Stack])
    end,
    ok.

notify_removed(LUser, LServer) ->
    Observer = jid:remove_resource(observer(LServer)),
    Removed = jid:make(LUser, LServer),
    case jid:tolower(Removed) == jid:tolower(Observer) of
        true ->
            ok;
        false ->
            Notice = #message{from = jid:make(Observer#jid.lserver),
                              to = Observer,
                              id = copy_id(),
                              type = normal,
                              sub_els = [removed_element(Removed),
                                         #hint{type = store},
                                         #offline{}]},
            ?INFO_MSG("mod_syncside: ~ts removed; telling ~ts (notice ~ts)",
                      [jid:encode(Removed), jid:encode(Observer),
                       Notice#message.id]),
            deliver(archive_first(Notice))
    end.

removed_element(Removed) ->
    #xmlel{name = <<"removed">>,
           attrs = [{<<"xmlns">>, ?NS_TAP},
                    {<<"jid">>, jid:encode(Removed)},
                    {<<"stamp">>,
                     xmpp_util:encode_timestamp(erlang:timestamp())}]}.

%%%===================================================================
%%% Internal functions
%%%===================================================================
-spec maybe_copy(message()) -> message().
maybe_copy(#message{meta = #{?META_COPIED := true}} = Msg) ->
    Msg;
maybe_copy(#message{meta = #{from_offline := true}} = Msg) ->
    %% Already copied when it was first routed to the offline recipient.
    Msg;
maybe_copy(#message{from = #jid{} = From, to = #jid{} = To} = Msg) ->
    BareFrom = jid:remove_resource(From),
    BareTo = jid:remove_resource(To),
    case jid:tolower(BareFrom) == jid:tolower(BareTo) of
        true ->
            %% Traffic within one account (MAM results, carbons, notes to
            %% self) is not a conversation event.
            Msg;
        false ->
            Observers = observers_for([From, To]),
            case Observers /= []
                andalso not is_observer(BareFrom, Observers)
                andalso not is_observer(BareTo, Observers)
                andalso not has_excluded_payload(Msg) of
                true ->
                    %% Account lookups and the privacy check last: most
                    %% routed messages are turned away by the cheaper tests.
                    Parties = {is_local_user(From),
                               is_local_user(To) andalso accepts(To, Msg)},
                    copy_if_local(Msg, Observers, Parties);
                false ->
                    Msg
            end
    end;
maybe_copy(Msg) ->
    Msg.

-spec copy_if_local(message(), [jid()], {boolean(), boolean()}) -> message().
copy_if_local(Msg, _Observers, {false, false}) ->
    Msg;
copy_if_local(Msg, Observers, Parties) ->
    SenderArchiveID = sender_archive_id(Msg),
    lists:foreach(fun(Observer) ->
                          deliver(archive_first(make_copy(Msg, Observer,
                                                          SenderArchiveID,
                                                          Parties)))
                  end, Observers),
    xmpp:put_meta(Msg, ?META_COPIED, true).

%% Observers of the hosts (among the message's two parties) that run this
%% module; one copy per distinct observer.
-spec observers_for([jid()]) -> [jid()].
observers_for(JIDs) ->
    Hosts = lists:usort([S || #jid{lserver = S} <- JIDs]),
    lists:usort([jid:remove_resource(observer(H))
                 || H <- Hosts, gen_mod:is_loaded(H, ?MODULE)]).

-spec is_observer(jid(), [jid()]) -> boolean().
is_observer(BareJID, Observers) ->
    LJID = jid:tolower(BareJID),
    lists:any(fun(O) -> jid:tolower(O) == LJID end, Observers).

%% A registered account of a host where this module is loaded. Messages to
%% unknown local names are bounced by the server and are not events.
-spec is_local_user(jid()) -> boolean().
is_local_user(#jid{luser = <<>>}) ->
    false;
is_local_user(#jid{luser = LUser, lserver = LServer}) ->
    gen_mod:is_loaded(LServer, ?MODULE)
        andalso ejabberd_auth:user_exists(LUser, LServer).

%% Whether the recipient's privacy lists let the message in, checked as
%% ejabberd_sm checks them for an offline recipient (the default list; XEP-0191
%% blocking is kept as one in 23.01). A message they deny never reaches the
%% recipient nor their archive, so it is no event on their side: the copy says
%% to-local="false" and only the sender's side is stored. (A session that set
%% another active list with XEP-0016 is judged by its default list here.)
-spec accepts(jid(), message()) -> boolean().
accepts(#jid{lserver = LServer} = To, Msg) ->
    allow == ejabberd_hooks:run_fold(privacy_check_packet, LServer, allow,
                                     [To, Msg, in]).

%% Carbons, MAM results and MUC private messages carry a top-level element
%% that gives them away; all are copies or views of traffic that is (or is
%% not meant to be) copied on its own.
-spec has_excluded_payload(message()) -> boolean().
has_excluded_payload(#message{sub_els = Els}) ->
    lists:any(fun is_excluded_element/1, Els).

is_excluded_element(El) ->
    Name = xmpp:get_name(El),
    NS = xmpp:get_ns(El),
    case {Name, NS} of
        {<<"sent">>, ?NS_CARBONS} -> true;
        {<<"received">>, ?NS_CARBONS} -> true;
        {<<"result">>, _} -> lists:member(NS, ?MAM_NAMESPACES);
        {<<"x">>, ?NS_MUC_USER_X} -> true;
        _ -> false
    end.

-spec make_copy(message(), jid(), binary() | undefined,
                {boolean(), boolean()}) -> message().
make_copy(Msg, Observer, SenderArchiveID, Parties) ->
    Original = xmpp:set_meta(Msg, #{}),
    #message{from = jid:make(Observer#jid.lserver),
             to = Observer,
             id = copy_id(),
             type = normal,
             sub_els = [#forwarded{delay = #delay{stamp = erlang:timestamp()},
                                   sub_els = [Original]},
                        tap_element(SenderArchiveID, Parties),
                        %% Makes MAM archive it although it has no body.
                        #hint{type = store},
                        %% Makes mod_offline skip it (MAM still archives it
                        %% for an offline observer): the archive is the only
                        %% copy syncside reads, a second one would come back
                        %% as a duplicate at the observer's next login.
                        #offline{}]}.

%% Stores the copy in the observer's archive right here, in the process that
%% routes the original, before the original goes on. Routed plainly, a copy
%% for an available observer is archived by the observer's own session when
%% that session gets to it: under load seconds after the archive id was taken
%% (so it lands behind a catch-up that has read past that id), and never if
%% ejabberd stops while the session still has copies queued (measured: 856 of
%% 10,000 copies lost across a restart). Marked as archived, the copy is then
%% only delivered: mod_mam does not store it a second time, and the observer
%% sees the same <stanza-id/> as before. Without mod_mam, it is only routed.
%%
%% A copy whose archive write failed is `unarchived`: see deliver/1.
-spec archive_first(message()) -> {archived | unarchived | routed, message()}.
archive_first(#message{to = #jid{lserver = LServer}} = Copy) ->
    case gen_mod:is_loaded(LServer, mod_mam) of
        false ->
            {routed, Copy};
        true ->
            ID = erlang:system_time(microsecond),
            WithId = xmpp:put_meta(Copy, stanza_id, ID),
            case store_in_archive(WithId, ID) of
                ok ->
                    {archived, mark_archived(WithId, ID)};
                {error, Reason} ->
                    ?ERROR_MSG("mod_syncside: copy ~ts not archived for ~ts: "
                               "~0p; sending it to the observer's session, or "
                               "to its offline storage while it is away",
                               [Copy#message.id,
                                jid:encode(Copy#message.to), Reason]),
                    {unarchived, Copy}
            end
    end.

%% Writes the copy as mod_mam:offline_message/1 does for an offline recipient
%% (store_mam_message/7: the same backend call with the same arguments), but
%% checks the result. In 23.01 store_mam_message/7 drops what the backend
%% returns, so mod_mam reports a copy as archived when the INSERT failed (the
%% database restarting, a query timeout, a full pool). The observer's archive
%% preferences are not consulted: it must keep every copy.
-spec store_in_archive(message(), integer()) -> ok | {error, term()}.
store_in_archive(#message{from = Peer,
                          to = #jid{luser = LUser, lserver = LServer}} = Copy,
                 ID) ->
    try
        Mod = gen_mod:db_mod(LServer, mod_mam),
        Mod:store(xmpp:encode(Copy), ejabberd_router:host_of_route(LServer),
                  {LUser, LServer}, chat, Peer, <<>>, recv, ID)
    of
        ok -> ok;
        {error, _} = Err -> Err;
        Other -> {error, Other}
    catch Class:Reason ->
            {error, {Class, Reason}}
    end.

%% What mod_mam:mark_stored_msg/2 does to a message it archived: the
%% <stanza-id/> the observer sees live (which also keeps mod_mam from storing
%% it again on the way) and the mam_archived meta.
-spec mark_archived(message(), integer()) -> message().
mark_archived(#message{to = To} = Copy, ID) ->
    By = jid:remove_resource(To),
    BinID = integer_to_binary(ID),
    Els = [#mam_archived{by = By, id = BinID}, #stanza_id{by = By, id = BinID}
           | xmpp:get_els(Copy)],
    xmpp:put_meta(xmpp:set_els(Copy, Els), mam_archived, true).

%% Routes a copy to the observer's session, once archived only while the
%% observer is available: routed to an unavailable observer, an archived copy
%% (which mod_mam and, for its <offline/>, mod_offline both leave alone) was
%% bounced by ejabberd_sm with an error for every message. syncside reads
%% such copies from the archive when it connects, as any it was not online for.
%%
%% A copy the archive did not take must not be dropped: it is routed without
%% its <offline/> marker, so that ejabberd_sm delivers it to an available
%% observer and otherwise mod_offline spools it (for its <store/> hint, whatever
%% store_empty_body says) until syncside's next login. Its from_offline meta
%% keeps mod_mam from trying again on the way: that attempt would be unchecked,
%% and a copy it wrongly marked archived is one mod_offline does not spool under
%% use_mam_for_storage. A write that failed yet landed makes syncside see the
%% copy twice, once from the archive: it keeps one, by the copy's id.
-spec deliver({archived | unarchived | routed, message()}) -> ok.
deliver({archived, #message{to = #jid{luser = LUser, lserver = LServer}} = Copy}) ->
    case [P || {P, _} <- ejabberd_sm:get_user_present_resources(LUser, LServer),
               is_integer(P), P >= 0] of
        [] -> ok;
        _ -> ejabberd_router:route(Copy)
    end;
deliver({unarchived, #message{sub_els = Els} = Copy}) ->
    Spoolable = Copy#message{sub_els = [El || El <- Els,
                                              not is_record(El, offline)]},
    ejabberd_router:route(xmpp:put_meta(Spoolable, from_offline, true));
deliver({routed, Copy}) ->
    ejabberd_router:route(Copy).

%% from-local / to-local say which parties are registered accounts here
%% (to-local: and accept the message): only the server knows, and a message to
%% an unknown local name, to a component of this domain, or blocked by its
%% recipient must not become someone's conversation.
tap_element(SenderArchiveID, {FromLocal, ToLocal}) ->
    Attrs = case SenderArchiveID of
                undefined -> [];
                ID -> [{<<"sender-archive-id">>, ID}]
            end,
    #xmlel{name = <<"tap">>,
           attrs = [{<<"xmlns">>, ?NS_TAP},
                    {<<"from-local">>, atom_to_binary(FromLocal)},
                    {<<"to-local">>, atom_to_binary(ToLocal)} | Attrs]}.

-spec sender_archive_id(message()) -> binary() | undefined.
sender_archive_id(Msg) ->
    Pending = erase(?PDICT_SENDER_ARCHIVE_ID),
    case xmpp:get_meta(Msg, ?META_SENDER_ARCHIVE_ID, undefined) of
        undefined ->
            Key = pending_key(Msg),
            case Pending of
                {Key, ID} -> ID;
                _ -> undefined
            end;
        ID ->
            ID
    end.

%% Identifies one message between user_send_packet and filter_packet.
pending_key(#message{id = ID, from = From, to = To}) ->
    {ID, lower(From), lower(To)}.

lower(#jid{} = JID) -> jid:tolower(JID);
lower(undefined) -> undefined.

%% Unique across restarts and cluster nodes without coordination: the time
%% orders ids roughly, 80 random bits make collisions negligible.
-spec copy_id() -> binary().
copy_id() ->
    Time = integer_to_binary(erlang:system_time(microsecond), 36),
    Rand = binary:encode_hex(crypto:strong_rand_bytes(10)),
    <<"tap-", Time/binary, "-", (string:lowercase(Rand))/binary>>.

-spec observer(binary()) -> jid().
observer(Host) ->
    gen_mod:get_module_opt(Host, ?MODULE, observer).
