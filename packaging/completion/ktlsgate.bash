# bash completion for ktlsgate(8) - installed as
# /usr/share/bash-completion/completions/ktlsgate.
# Nouns, verbs and options as in daemon/cli/*.c (each file's usage text and verb table);
# tests/packaging/test-deb.sh checks the nouns and verbs against `ktlsgate --help`
# and completes a few command lines.
# COMPREPLY=($(compgen ...)) is bash-completion's own idiom (words have no spaces).
# shellcheck disable=SC2207

_ktlsgate_verbs() {
	case $1 in
	pki) echo "root intermediate device server self-signed verification-cert crl" ;;
	ca) echo "add verify list set remove" ;;
	device) echo "add set show list expiring remove import credentials" ;;
	session) echo "list kill" ;;
	tpm) echo "info keygen csr flush" ;;
	block) echo "add remove list stats" ;;
	registry) echo "migrate copy" ;;
	esac
}

_ktlsgate_opts() { # NOUN VERB
	case "$1 $2" in
	"pki verification-cert") echo "--ca --challenge --out" ;;
	"pki crl") echo "--ca --out" ;;
	pki\ *) echo "--cn --out --ca --days --not-before --eku --rsa --not-ca --san" ;;
	"ca add") echo "--name --backend --auto-enroll --username-check" ;;
	"ca list") echo "--json" ;;
	"ca set") echo "--backend --auto-enroll --status --username-check" ;;
	"device add") echo "--thumbprint --secondary --cert --backend --status --auth --username --password-stdin --json" ;;
	"device set") echo "--status --backend --thumbprint --secondary --cert" ;;
	"device show") echo "--json" ;;
	"device list") echo "--status --json" ;;
	"device expiring") echo "--days --json" ;;
	"device import") echo "--format" ;;
	"device credentials") echo "--json --rotate --slot --password-stdin" ;;
	"session list" | "block list" | "block stats") echo "--json" ;;
	"block add") echo "--for" ;;
	"registry copy") echo "--from --to" ;;
	"tpm info") echo "--tcti --json" ;;
	"tpm keygen") echo "--ecdsa --rsa --handle --out --tcti" ;;
	"tpm csr") echo "--key --cn --out --tcti" ;;
	"tpm flush") echo "--tcti" ;;
	"verify "*) echo "--chain --ca --at" ;;
	"status "*) echo "--json" ;;
	"upgrade "*) echo "--timeout" ;;
	"reasons "*) echo "--markdown" ;;
	esac
}

_ktlsgate() {
	local cur prev words cword
	_init_completion || return

	# Values of options that take one.
	case $prev in
	-c | --config | -r | --registry | --out | --cert | --chain | --ca | --key)
		_filedir
		return
		;;
	--status)
		local i n=""
		for ((i = 1; i < cword; i++)); do
			case ${words[i]} in ca | device) n=${words[i]} && break ;; esac
		done
		if [[ $n == ca ]]; then
			COMPREPLY=($(compgen -W "enabled disabled revoked" -- "$cur"))
		else
			COMPREPLY=($(compgen -W "enabled disabled suspended quarantined decommissioned" -- "$cur"))
		fi
		return
		;;
	--username-check)
		COMPREPLY=($(compgen -W "strict rewrite pass default" -- "$cur"))
		return
		;;
	--auto-enroll)
		# `ca set` takes on|off; `ca add --auto-enroll` is a flag.
		[[ " ${words[*]} " == *" set "* ]] && COMPREPLY=($(compgen -W "on off" -- "$cur"))
		return
		;;
	--eku)
		COMPREPLY=($(compgen -W "client server none" -- "$cur"))
		return
		;;
	--format)
		COMPREPLY=($(compgen -W "csv jsonl" -- "$cur"))
		return
		;;
	--auth)
		COMPREPLY=($(compgen -W "x509 thumbprint sas token basic" -- "$cur"))
		return
		;;
	--slot)
		COMPREPLY=($(compgen -W "primary secondary" -- "$cur"))
		return
		;;
	--cn | --days | --not-before | --san | --challenge | --name | --backend | --thumbprint | \
		--secondary | --at | --for | --tcti | --handle | --username)
		return
		;;
	esac

	# The noun and the verb: the first two words after the global options.
	local i noun="" verb=""
	for ((i = 1; i < cword; i++)); do
		case ${words[i]} in
		-c | --config | -r | --registry) ((i++)) ;;
		-*) ;;
		*)
			if [[ -z $noun ]]; then
				noun=${words[i]}
			elif [[ -z $verb ]]; then
				verb=${words[i]}
				break
			fi
			;;
		esac
	done

	if [[ -z $noun ]]; then
		if [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W "-c --config -r --registry -h --help --version" -- "$cur"))
		else
			COMPREPLY=($(compgen -W "pki ca device verify session status reload upgrade tpm block registry reasons help" -- "$cur"))
		fi
		return
	fi
	local verbs
	verbs=$(_ktlsgate_verbs "$noun")
	if [[ -n $verbs && -z $verb ]]; then
		COMPREPLY=($(compgen -W "$verbs --help" -- "$cur"))
		return
	fi
	if [[ $cur == -* ]]; then
		COMPREPLY=($(compgen -W "$(_ktlsgate_opts "$noun" "$verb") --help" -- "$cur"))
		return
	fi
	# Positional arguments that are files.
	case "$noun $verb" in
	"ca add" | "ca verify" | "device import" | verify\ * | "pki crl") _filedir ;;
	esac
} && complete -F _ktlsgate ktlsgate
