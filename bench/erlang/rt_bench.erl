%% rt_bench.erl — the seven runtime workloads of
%% shared/bench/runtime-workloads.md on the BEAM (Erlang/OTP 25), so they
%% can be measured side by side with build/bench/rt_bench on one machine.
%%
%% Run (scripts/run-bench.sh does this):
%%   erlc -o build/bench/erlang bench/erlang/rt_bench.erl
%%   erl -noshell +P 4000000 -pa build/bench/erlang \
%%       -run rt_bench main -extra [workload...] [--scale F] [--reps N]
%% (erl itself would take options such as --scale as its own: they go
%% after -extra and are read with init:get_plain_arguments/0.)
%%
%% Method: every run of a workload happens in a fresh driver process
%% (spawn_monitor from the top process), after a GC of the top process and
%% a 300 ms pause. Each metric is the median of its runs; the output ends
%% with one line `RESULT {json}` shaped like rt_bench's:
%%   {"workloads": {"<name>": {"<metric>": {"median": N, "runs": [...]}}}}
%% Benchmarks are never tests: nothing asserts on time; every wait is
%% bounded.
-module(rt_bench).

-export([main/0, main/1, start_room_tree/2]).
%% gen_server and supervisor callbacks (one module plays every role; init/1
%% tells them apart by its argument).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, handle_continue/2,
         terminate/2]).

-define(ALL, [spawn, ring, pingpong, cast, fanout, restart, trees]).
-define(MAP_SIZE, 100).
-define(WAIT, 300000). % ms: the longest any single wait may take

metrics(spawn) -> [us_per_spawn, us_per_spawn_ready, bytes_per_proc, bytes_per_proc_total,
                   bytes_process_info, us_per_stop];
metrics(ring) -> [ns_per_hop, hops_per_s];
metrics(pingpong) -> [us_per_call, calls_per_s];
metrics(cast) -> [msgs_per_s, ns_per_msg, send_msgs_per_s, backlog_at_send_end];
metrics(fanout) -> [ms_per_broadcast, deliveries_per_s, ms_min, ms_max];
metrics(restart) -> [restarts_per_s, us_per_restart, latency_us_median, latency_us_p99,
                     latency_us_max, first1k_restarts_per_s, first1k_latency_us_median];
metrics(trees) -> [us_per_tree, bytes_per_tree, bytes_per_tree_total, bytes_per_tree_after_gc,
                   bytes_room_sup, bytes_backup, bytes_room, us_per_tree_shutdown].

note(bytes_per_proc) -> "memory(processes) delta - driver growth";
note(bytes_per_proc_total) -> "memory(total) delta - driver growth";
note(bytes_per_tree) -> "memory(processes) delta, no GC";
note(bytes_per_tree_total) -> "memory(total) delta, no GC";
note(bytes_per_tree_after_gc) -> "memory(processes) delta after GC of all";
note(bytes_process_info) -> "process_info(memory)";
note(bytes_room_sup) -> "process_info(memory)";
note(bytes_backup) -> "process_info(memory)";
note(bytes_room) -> "process_info(memory)";
note(_) -> "".

%% ---- Entry -------------------------------------------------------------

main() -> main(init:get_plain_arguments()).

main(Args) ->
    {Ws0, Scale, Reps} = parse(Args, [], 1.0, 3),
    Ws = case Ws0 of [] -> ?ALL; _ -> [W || W <- ?ALL, lists:member(W, Ws0)] end,
    io:format("rt_bench.erl: BEAM runtime workloads, OTP ~s, ERTS ~s, scale ~p, ~p runs each, "
              "~p schedulers~n",
              [erlang:system_info(otp_release), erlang:system_info(version), Scale, Reps,
               erlang:system_info(schedulers_online)]),
    Load = case file:read_file("/proc/loadavg") of
               {ok, Bin} -> hd(string:lexemes(binary_to_list(Bin), " "));
               _ -> "?"
           end,
    io:format("load average (1 min) at start: ~s~n", [Load]),
    Results = [{W, run_workload(W, Scale, Reps)} || W <- Ws],
    print_table(Results),
    io:format("~nRESULT ~s~n", [json(Results)]),
    Failed = [W || {W, {_, Fails}} <- Results, Fails > 0],
    case Failed of
        [] -> halt(0);
        _ -> io:format("rt_bench.erl: runs FAILED in ~p~n", [Failed]), halt(1)
    end.

parse([], Ws, S, R) -> {lists:reverse(Ws), S, R};
parse(["--scale", V | T], Ws, _, R) -> parse(T, Ws, num(V), R);
parse(["--reps", V | T], Ws, S, _) -> parse(T, Ws, S, list_to_integer(V));
parse([W | T], Ws, S, R) ->
    A = list_to_atom(W),
    case lists:member(A, ?ALL) of
        true -> parse(T, [A | Ws], S, R);
        false -> io:format("rt_bench.erl: unknown workload ~s~n", [W]), halt(2)
    end.

num(V) ->
    try list_to_float(V) catch error:badarg -> float(list_to_integer(V)) end.

now_ns() -> erlang:monotonic_time(nanosecond).

scaled(Base, Scale) -> max(1, round(Base * Scale)).

%% Runs workload W Reps times, each in a fresh driver process. Returns
%% {[{Metric, [Values]}], Failures}.
run_workload(W, Scale, Reps) ->
    Runs = [run_once(W, Scale, R, Reps) || R <- lists:seq(1, Reps)],
    Ok = [M || {ok, M} <- Runs],
    Series = [{Name, [V || M <- Ok, {N, V} <- M, N =:= Name]} || Name <- metrics(W)],
    {Series, length(Runs) - length(Ok)}.

run_once(W, Scale, R, Reps) ->
    erlang:garbage_collect(),
    timer:sleep(300),
    Top = self(),
    T0 = now_ns(),
    {Pid, Ref} = spawn_monitor(fun() -> Top ! {result, self(), run(W, Scale)} end),
    Res = receive
              {result, Pid, M} ->
                  receive {'DOWN', Ref, process, Pid, _} -> ok end,
                  {ok, M};
              {'DOWN', Ref, process, Pid, Reason} ->
                  io:format("    ERROR ~p run ~p: ~P~n", [W, R, Reason, 30]),
                  failed
          after 2 * ?WAIT ->
                  exit(Pid, kill),
                  io:format("    ERROR ~p run ~p: TIMEOUT~n", [W, R]),
                  failed
          end,
    io:format("  ~-8s run ~p/~p: ~s (~.1f s)~n",
              [W, R, Reps, case Res of failed -> "FAILED"; _ -> "ok" end,
               (now_ns() - T0) / 1.0e9]),
    Res.

%% ---- 1. spawn ------------------------------------------------------------

run(spawn, Scale) ->
    N = scaled(1000000, Scale),
    B = erlang:system_info(process_count),
    C = atomics:new(1, []),
    atomics:put(C, 1, N),
    Self = self(),
    P0 = erlang:memory(processes),
    Tot0 = erlang:memory(total),
    {memory, D0} = process_info(self(), memory),
    T0 = now_ns(),
    Pids = spawn_n(N, C, Self, []),
    T1 = now_ns(),
    wait_run_queues(T1 + ?WAIT * 1000000),
    T2 = now_ns(),
    P1 = erlang:memory(processes),
    Tot1 = erlang:memory(total),
    {memory, D1} = process_info(self(), memory),
    [Last | _] = Pids, % the list is built backwards: its head is the last spawned
    {memory, PI} = process_info(Last, memory),
    InOrder = lists:reverse(Pids),
    T3 = now_ns(),
    lists:foreach(fun(P) -> P ! stop end, InOrder),
    receive all_stopped -> ok after ?WAIT -> exit(all_stopped_timeout) end,
    wait_count(B, ?WAIT),
    T4 = now_ns(),
    [{us_per_spawn, (T1 - T0) / 1000 / N},
     {us_per_spawn_ready, (T2 - T0) / 1000 / N},
     {bytes_per_proc, (P1 - P0 - (D1 - D0)) / N},
     {bytes_per_proc_total, (Tot1 - Tot0 - (D1 - D0)) / N},
     {bytes_process_info, PI},
     {us_per_stop, (T4 - T3) / 1000 / N}];

%% ---- 2. ring ---------------------------------------------------------------

run(ring, Scale) ->
    H = scaled(1000000, Scale),
    Self = self(),
    Pids = [spawn(fun() -> ring_init(Self) end) || _ <- lists:seq(1, 1000)],
    Succs = tl(Pids) ++ [hd(Pids)],
    lists:foreach(fun({P, S}) -> P ! {next, S} end, lists:zip(Pids, Succs)),
    [receive {ack, P} -> ok after ?WAIT -> exit(ring_ack_timeout) end || P <- Pids],
    T0 = now_ns(),
    hd(Pids) ! {token, H},
    receive ring_done -> ok after ?WAIT -> exit(ring_timeout) end,
    T = now_ns() - T0,
    [exit(P, kill) || P <- Pids],
    [{ns_per_hop, T / H}, {hops_per_s, H / (T / 1.0e9)}];

%% ---- 3. pingpong -------------------------------------------------------------

run(pingpong, Scale) ->
    N = scaled(1000000, Scale),
    {ok, S} = gen_server:start(?MODULE, pingpong, []), % no link
    T0 = now_ns(),
    ping_loop(S, N),
    T = now_ns() - T0,
    gen_server:stop(S),
    [{us_per_call, T / 1000 / N}, {calls_per_s, N / (T / 1.0e9)}];

%% ---- 4. cast -------------------------------------------------------------------

run(cast, Scale) ->
    Per = scaled(5000000, Scale),
    Total = 2 * Per,
    Self = self(),
    {ok, S} = gen_server:start(?MODULE, {counter, Self, Total}, []),
    Senders = [spawn_opt(fun() -> sender(Self, S, Per) end, [{scheduler, I}]) || I <- [1, 2]],
    [receive {ready, P} -> ok after ?WAIT -> exit(sender_ready_timeout) end || P <- Senders],
    T0 = now_ns(),
    [P ! go || P <- Senders],
    Ends = [receive {sender_done, T} -> T after ?WAIT -> exit(sender_timeout) end
            || _ <- Senders],
    {message_queue_len, Backlog} = process_info(S, message_queue_len),
    Tc = receive {counted, T} -> T after ?WAIT -> exit(counted_timeout) end,
    gen_server:stop(S),
    [{msgs_per_s, Total / ((Tc - T0) / 1.0e9)},
     {ns_per_msg, (Tc - T0) / Total},
     {send_msgs_per_s, Total / ((lists:max(Ends) - T0) / 1.0e9)},
     {backlog_at_send_end, Backlog}];

%% ---- 5. fanout -------------------------------------------------------------------

run(fanout, Scale) ->
    Subs = scaled(100000, Scale),
    Self = self(),
    Coll = spawn(fun() -> collector(Self, Subs, 0) end),
    Pids = [spawn(fun() -> subscriber(Coll) end) || _ <- lists:seq(1, Subs)],
    Ms = [broadcast(Pids, Seq) || Seq <- lists:seq(1, 20)],
    [exit(P, kill) || P <- [Coll | Pids]],
    Sorted = lists:sort(Ms),
    Med = (lists:nth(10, Sorted) + lists:nth(11, Sorted)) / 2,
    [{ms_per_broadcast, Med}, {deliveries_per_s, Subs / (Med / 1000)},
     {ms_min, hd(Sorted)}, {ms_max, lists:last(Sorted)}];

%% ---- 6. restart ---------------------------------------------------------------------

run(restart, Scale) ->
    K = scaled(100000, Scale),
    #{level := Level} = logger:get_primary_config(),
    logger:set_primary_config(level, none),
    try restart(K) after logger:set_primary_config(level, Level) end;

%% ---- 7. trees --------------------------------------------------------------------------

run(trees, Scale) ->
    M = scaled(100000, Scale),
    process_flag(trap_exit, true),
    {ok, Top} = supervisor:start_link(?MODULE, top),
    P0 = erlang:memory(processes),
    Tot0 = erlang:memory(total),
    T0 = now_ns(),
    {ok, Sup1} = supervisor:start_child(Top, [1, undefined]),
    start_trees(Top, 2, M),
    T1 = now_ns(),
    P1 = erlang:memory(processes),
    Tot1 = erlang:memory(total),
    Kids = supervisor:which_children(Sup1),
    {backup, Backup1, _, _} = lists:keyfind(backup, 1, Kids),
    {room, Room1, _, _} = lists:keyfind(room, 1, Kids),
    {memory, MSup} = process_info(Sup1, memory),
    {memory, MBackup} = process_info(Backup1, memory),
    {memory, MRoom} = process_info(Room1, memory),
    [erlang:garbage_collect(P) || P <- erlang:processes()],
    P2 = erlang:memory(processes),
    T2 = now_ns(),
    exit(Top, shutdown),
    receive {'EXIT', Top, _} -> ok after ?WAIT -> exit(top_shutdown_timeout) end,
    T3 = now_ns(),
    [{us_per_tree, (T1 - T0) / 1000 / M},
     {bytes_per_tree, (P1 - P0) / M},
     {bytes_per_tree_total, (Tot1 - Tot0) / M},
     {bytes_per_tree_after_gc, (P2 - P0) / M},
     {bytes_room_sup, MSup}, {bytes_backup, MBackup}, {bytes_room, MRoom},
     {us_per_tree_shutdown, (T3 - T2) / 1000 / M}].

%% ---- Workload helpers ------------------------------------------------------------

spawn_n(0, _, _, Acc) -> Acc;
spawn_n(K, C, D, Acc) ->
    P = spawn(fun() -> idle(C, D) end),
    spawn_n(K - 1, C, D, [P | Acc]).

idle(C, D) ->
    receive
        stop ->
            case atomics:sub_get(C, 1, 1) of
                0 -> D ! all_stopped;
                _ -> ok
            end
    end.

%% Yields until every run queue is empty (every new process has run as
%% far as its blocking receive).
wait_run_queues(Deadline) ->
    case erlang:statistics(total_run_queue_lengths_all) of
        0 -> ok;
        _ ->
            case now_ns() > Deadline of
                true -> exit(run_queue_timeout);
                false -> erlang:yield(), wait_run_queues(Deadline)
            end
    end.

%% Polls the process count every 1 ms until it is back to B.
wait_count(B, MsLeft) ->
    case erlang:system_info(process_count) =< B of
        true -> ok;
        false when MsLeft =< 0 -> exit(process_count_timeout);
        false -> timer:sleep(1), wait_count(B, MsLeft - 1)
    end.

ring_init(D) ->
    receive {next, S} -> D ! {ack, self()}, ring_loop(S, D) end.

ring_loop(S, D) ->
    receive
        {token, 0} -> D ! ring_done, ring_loop(S, D);
        {token, K} -> S ! {token, K - 1}, ring_loop(S, D)
    end.

ping_loop(_, 0) -> ok;
ping_loop(S, K) ->
    pong = gen_server:call(S, ping),
    ping_loop(S, K - 1).

sender(D, S, N) ->
    D ! {ready, self()},
    receive go -> ok end,
    cast_loop(S, N),
    D ! {sender_done, now_ns()}.

cast_loop(_, 0) -> ok;
cast_loop(S, K) -> gen_server:cast(S, inc), cast_loop(S, K - 1).

subscriber(C) ->
    receive {bcast, Seq} -> C ! {ack, Seq}, subscriber(C) end.

collector(D, N, K) ->
    receive
        {ack, Seq} ->
            case K + 1 of
                N -> D ! {delivered, Seq, now_ns()}, collector(D, N, 0);
                K1 -> collector(D, N, K1)
            end
    end.

broadcast(Pids, Seq) ->
    T0 = now_ns(),
    lists:foreach(fun(P) -> P ! {bcast, Seq} end, Pids),
    receive {delivered, Seq, T} -> (T - T0) / 1.0e6 after ?WAIT -> exit(fanout_timeout) end.

%% The room tree: room supervisor with the backup, then the room added with
%% start_child once the backup's pid is known.
room_spec(Backup, Watcher) ->
    #{id => room, start => {gen_server, start_link, [?MODULE, {room, Backup, Watcher}, []]},
      restart => permanent, shutdown => 5000, type => worker}.

start_room_tree(_Id, Watcher) ->
    {ok, Sup} = supervisor:start_link(?MODULE, room_sup),
    {backup, Backup, _, _} = lists:keyfind(backup, 1, supervisor:which_children(Sup)),
    {ok, _Room} = supervisor:start_child(Sup, room_spec(Backup, Watcher)),
    {ok, Sup}.

negated() -> maps:from_list([{K, -K} || K <- lists:seq(1, ?MAP_SIZE)]).

restart(K) ->
    process_flag(trap_exit, true),
    {ok, Sup} = supervisor:start_link(?MODULE, room_sup),
    {backup, Backup, _, _} = lists:keyfind(backup, 1, supervisor:which_children(Sup)),
    {ok, Room0} = supervisor:start_child(Sup, room_spec(Backup, self())),
    receive {restored, Room0, _} -> ok after ?WAIT -> exit(first_restored_timeout) end,
    [ok = gen_server:call(Room0, {set, I, -I}) || I <- lists:seq(1, ?MAP_SIZE)],
    Expected = negated(),
    case gen_server:call(Room0, get) of
        Expected -> ok;
        Bad0 -> io:format("    STATE CHECK FAILED before the loop: ~P~n", [Bad0, 20]),
                exit(state_check_failed)
    end,
    N1k = min(K, 1000),
    T0 = now_ns(),
    {Room, Lats, T1k} = kill_loop(Room0, K, N1k, 0, [], T0),
    T = now_ns() - T0,
    case gen_server:call(Room, get) of
        Expected -> ok;
        Bad -> io:format("    STATE CHECK FAILED: state did not survive ~p crashes: ~P~n",
                         [K, Bad, 20]),
               exit(state_check_failed)
    end,
    exit(Sup, shutdown),
    receive {'EXIT', Sup, _} -> ok after ?WAIT -> exit(sup_shutdown_timeout) end,
    InOrder = lists:reverse(Lats),
    Sorted = lists:sort(InOrder),
    First = lists:sort(lists:sublist(InOrder, N1k)),
    [{restarts_per_s, K / (T / 1.0e9)},
     {us_per_restart, T / 1000 / K},
     {latency_us_median, rank(Sorted, 0.5) / 1000},
     {latency_us_p99, rank(Sorted, 0.99) / 1000},
     {latency_us_max, lists:last(Sorted) / 1000},
     {first1k_restarts_per_s, N1k / ((T1k - T0) / 1.0e9)},
     {first1k_latency_us_median, rank(First, 0.5) / 1000}].

kill_loop(Room, K, _N1k, K, Acc, T1k) -> {Room, Acc, T1k};
kill_loop(Room, K, N1k, I, Acc, T1k) ->
    Tk = now_ns(),
    exit(Room, kill),
    receive
        {restored, New, Tr} ->
            I1 = I + 1,
            T1k1 = case I1 of N1k -> now_ns(); _ -> T1k end,
            kill_loop(New, K, N1k, I1, [Tr - Tk | Acc], T1k1)
    after ?WAIT -> exit(restored_timeout)
    end.

%% Nearest rank on a sorted list.
rank(Sorted, P) ->
    N = length(Sorted),
    lists:nth(min(N, max(1, ceil(P * N))), Sorted).

start_trees(_, I, M) when I > M -> ok;
start_trees(Top, I, M) ->
    {ok, _} = supervisor:start_child(Top, [I, undefined]),
    start_trees(Top, I + 1, M).

%% ---- Callbacks ----------------------------------------------------------------------

init(room_sup) ->
    {ok, {#{strategy => one_for_one, intensity => 1000000, period => 1},
          [#{id => backup, start => {gen_server, start_link, [?MODULE, backup, []]},
             restart => permanent, shutdown => 5000, type => worker}]}};
init(top) ->
    {ok, {#{strategy => simple_one_for_one, intensity => 10, period => 1},
          [#{id => room_tree, start => {?MODULE, start_room_tree, []},
             restart => permanent, shutdown => infinity, type => supervisor}]}};
init(pingpong) ->
    {ok, {pp, 0}};
init({counter, D, Total}) ->
    {ok, {counter, D, Total, 0}};
init(backup) ->
    %% Built at run time: a literal map would be shared, not copied.
    {ok, {backup, maps:from_list([{K, K} || K <- lists:seq(1, ?MAP_SIZE)])}};
init({room, Backup, Watcher}) ->
    Map = gen_server:call(Backup, get_state),
    T = now_ns(),
    {ok, {room, Map, Backup, Watcher, T}, {continue, restored}}.

handle_continue(restored, {room, _, _, Watcher, T} = S) ->
    case Watcher of
        undefined -> ok;
        _ -> Watcher ! {restored, self(), T}
    end,
    {noreply, S}.

handle_call(ping, _From, {pp, N}) -> {reply, pong, {pp, N + 1}};
handle_call(get_state, _From, {backup, M} = S) -> {reply, M, S};
handle_call({set, K, V}, _From, {room, M, B, W, T}) ->
    gen_server:cast(B, {put, K, V}),
    {reply, ok, {room, M#{K => V}, B, W, T}};
handle_call(get, _From, {room, M, _, _, _} = S) -> {reply, M, S}.

handle_cast(inc, {counter, D, Total, N}) ->
    N1 = N + 1,
    case N1 of
        Total -> D ! {counted, now_ns()};
        _ -> ok
    end,
    {noreply, {counter, D, Total, N1}};
handle_cast({put, K, V}, {backup, M}) -> {noreply, {backup, M#{K => V}}}.

handle_info(_, S) -> {noreply, S}.

terminate(_, _) -> ok.

%% ---- Output ------------------------------------------------------------------------------

median(Vs) ->
    S = lists:sort(Vs),
    N = length(S),
    case N rem 2 of
        1 -> lists:nth(N div 2 + 1, S);
        0 -> (lists:nth(N div 2, S) + lists:nth(N div 2 + 1, S)) / 2
    end.

%% Integers from 1000 up, else 4 significant digits (as rt_bench.c).
fmt(V) when abs(V) >= 1000 -> integer_to_list(round(V));
fmt(V) when V == 0 -> "0";
fmt(V) when is_integer(V) -> integer_to_list(V);
fmt(V) ->
    D = max(0, 3 - floor(math:log10(abs(V)))),
    float_to_list(float(V), [{decimals, D}, compact]).

print_table(Results) ->
    io:format("~n~-9s ~-26s ~14s  ~-40s ~s~n", [workload, metric, median, runs, measure]),
    lists:foreach(
      fun({W, {Series, _}}) ->
              lists:foldl(
                fun({Name, Vs}, First) ->
                        {Med, Runs} = case Vs of
                                          [] -> {"-", ""};
                                          _ -> {fmt(median(Vs)),
                                                lists:join(", ", [fmt(V) || V <- Vs])}
                                      end,
                        io:format("~-9s ~-26s ~14s  ~-40s ~s~n",
                                  [case First of true -> W; false -> "" end, Name, Med, Runs,
                                   note(Name)]),
                        false
                end, true, Series)
      end, Results).

json(Results) ->
    Ws = [[$", atom_to_list(W), "\": {",
           lists:join(", ", [[$", atom_to_list(Name), "\": {\"median\": ", fmt(median(Vs)),
                              ", \"runs\": [", lists:join(", ", [fmt(V) || V <- Vs]), "]}"]
                             || {Name, Vs} <- Series, Vs =/= []]),
           "}"] || {W, {Series, _}} <- Results],
    lists:flatten(["{\"workloads\": {", lists:join(", ", Ws), "}}"]).
