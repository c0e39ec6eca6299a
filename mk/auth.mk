# mk/auth.mk - the CONNECT credential engine (daemon/auth/) under ThreadSanitizer: its
# scrypt pool and the limiter every worker shares are the daemon's only code where
# threads meet outside the registry writer, so the auth suite (tests/unit/check_auth.c:
# pool jobs, queue full, cancels, a 150-job stress, the limiter under four threads) runs
# once more in build/tsan with -fsanitize=thread; a data race aborts the test
# (halt_on_error) and fails the check. About 45 s cold on 2 cores, a second warm.
FRAG_CHECKS += check-auth-tsan

.PHONY: check-auth-tsan
check-auth-tsan:
	$(MAKE) BUILD=build/tsan CFLAGS="-O1 -g -fsanitize=thread" LDFLAGS="-fsanitize=thread" build/tsan/check_unit
	cd tests/unit && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 CK_FORK=yes CK_RUN_SUITE=auth \
	  ../../build/tsan/check_unit
