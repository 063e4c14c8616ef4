# bash completion for pfmigrate. Generated from its argparse parser by packaging/completion.py
# (make completion); do not edit. Install: copy to /usr/share/bash-completion/completions/pfmigrate
# (or source it from ~/.bashrc).

_pfmigrate_commands() {
    case "$1" in
        "") echo "pfkey xfrm mh demo monitor keyd mn ha setkey" ;;
        "ha") echo "status" ;;
        "mh") echo "decode" ;;
        "mn") echo "status" ;;
        "pfkey") echo "decode encode" ;;
        "xfrm") echo "decode" ;;
    esac
}

_pfmigrate_options() {
    case "$1" in
        "") echo "-h --help --version" ;;
        "demo") echo "-h --help --svg --wire --json --from-logs --files" ;;
        "ha") echo "-h --help --config --log-level --no-route-optimisation --control --metrics" ;;
        "ha status") echo "-h --help --json --control --config --timeout" ;;
        "keyd") echo "-h --help --socket --journal --admin-group --read-group --socket-mode --semantics --metrics --outbox --max-per-user --log-level" ;;
        "mh") echo "-h --help" ;;
        "mh decode") echo "-h --help --json --src --dst" ;;
        "mn") echo "-h --help --config --log-level --no-route-optimisation --control --metrics" ;;
        "mn status") echo "-h --help --json --control --config --timeout" ;;
        "monitor") echo "-h --help --backend --keyd-socket --json --count --timeout --reconnect" ;;
        "pfkey") echo "-h --help" ;;
        "pfkey decode") echo "-h --help --json" ;;
        "pfkey encode") echo "-h --help" ;;
        "setkey") echo "-h --help -c -f -D -F -x -P -a -n -r -k --keys --json --backend --keyd-socket --yes --count --timeout" ;;
        "xfrm") echo "-h --help" ;;
        "xfrm decode") echo "-h --help --json" ;;
    esac
}

# What follows an option: its choices, @file (a file name) or @any (anything).
_pfmigrate_value() {
    case "$1|$2" in
        "demo|--from-logs") echo "@file" ;;
        "demo|--svg") echo "@file" ;;
        "ha|--config") echo "@file" ;;
        "ha|--control") echo "@file" ;;
        "ha|--log-level") echo "debug info warning error" ;;
        "ha|--metrics") echo "@file" ;;
        "ha status|--config") echo "@file" ;;
        "ha status|--control") echo "@file" ;;
        "ha status|--timeout") echo "@any" ;;
        "keyd|--admin-group") echo "@any" ;;
        "keyd|--journal") echo "@file" ;;
        "keyd|--log-level") echo "debug info warning error" ;;
        "keyd|--max-per-user") echo "@any" ;;
        "keyd|--metrics") echo "@file" ;;
        "keyd|--outbox") echo "@any" ;;
        "keyd|--read-group") echo "@any" ;;
        "keyd|--semantics") echo "pfmigrate linux" ;;
        "keyd|--socket") echo "@file" ;;
        "keyd|--socket-mode") echo "@any" ;;
        "mh decode|--dst") echo "@any" ;;
        "mh decode|--src") echo "@any" ;;
        "mn|--config") echo "@file" ;;
        "mn|--control") echo "@file" ;;
        "mn|--log-level") echo "debug info warning error" ;;
        "mn|--metrics") echo "@file" ;;
        "mn status|--config") echo "@file" ;;
        "mn status|--control") echo "@file" ;;
        "mn status|--timeout") echo "@any" ;;
        "monitor|--backend") echo "keyd linux-pfkey linux-xfrm inprocess" ;;
        "monitor|--count") echo "@any" ;;
        "monitor|--keyd-socket") echo "@file" ;;
        "monitor|--timeout") echo "@any" ;;
        "setkey|--backend") echo "keyd linux-pfkey linux-xfrm inprocess" ;;
        "setkey|--count") echo "@any" ;;
        "setkey|--keyd-socket") echo "@any" ;;
        "setkey|--timeout") echo "@any" ;;
        "setkey|-f") echo "@any" ;;
    esac
}

_pfmigrate_positional() {
    case "$1" in
        "mh decode") echo "@any" ;;
        "pfkey decode") echo "@any" ;;
        "pfkey encode") echo "@any" ;;
        "xfrm decode") echo "@any" ;;
    esac
}

_pfmigrate_words() {
    local kind="$1" cur="$2"
    case "$kind" in
        "") ;;
        @file) COMPREPLY=($(compgen -f -- "$cur")); compopt -o filenames 2>/dev/null ;;
        @dir) COMPREPLY=($(compgen -d -- "$cur")); compopt -o filenames 2>/dev/null ;;
        @any) ;;
        *) COMPREPLY=($(compgen -W "$kind" -- "$cur")) ;;
    esac
}

_pfmigrate() {
    local cur="${COMP_WORDS[COMP_CWORD]}" path="" word skip="" i
    COMPREPLY=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        word="${COMP_WORDS[i]}"
        if [[ -n "$skip" ]]; then skip=""; continue; fi
        if [[ "$word" == -* ]]; then
            [[ "$word" != *=* && -n "$(_pfmigrate_value "$path" "$word")" ]] && skip=1
            continue
        fi
        if [[ " $(_pfmigrate_commands "$path") " == *" $word "* ]]; then
            path="${path:+$path }$word"
        fi
    done
    if [[ -n "$skip" ]]; then
        _pfmigrate_words "$(_pfmigrate_value "$path" "${COMP_WORDS[COMP_CWORD-1]}")" "$cur"
        return 0
    fi
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$(_pfmigrate_options "$path")" -- "$cur"))
        return 0
    fi
    local commands
    commands="$(_pfmigrate_commands "$path")"
    if [[ -n "$commands" ]]; then
        COMPREPLY=($(compgen -W "$commands" -- "$cur"))
    else
        _pfmigrate_words "$(_pfmigrate_positional "$path")" "$cur"
    fi
    return 0
}

complete -F _pfmigrate pfmigrate
