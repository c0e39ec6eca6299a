/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * identity.c - the device id rule (contract in identity.h). Pure: no I/O, no
 * allocation, no OpenSSL; the verifier calls it on the leaf's CN, the CLI on ids it is
 * given.
 */
#include <stdbool.h>
#include <stddef.h>

#include "policy/identity.h"

bool kg_identity_valid(const char *cn, size_t len, size_t *module_off)
{
	size_t slash = 0, n_slash = 0;

	if (cn == NULL || len == 0 || len > KG_DEVICE_ID_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)cn[i];

		if (c < 0x21 || c > 0x7e)
			return false;
		if (c == '/') {
			if (++n_slash > 1)
				return false;
			slash = i;
		}
	}
	if (n_slash == 1) {
		size_t mlen = len - slash - 1;
		const char *mod = cn + slash + 1;

		if (slash == 0 || mlen == 0)
			return false;
		if ((slash == 1 && cn[0] == '.') || (slash == 2 && cn[0] == '.' && cn[1] == '.'))
			return false;
		if ((mlen == 1 && mod[0] == '.') || (mlen == 2 && mod[0] == '.' && mod[1] == '.'))
			return false;
	} else if ((len == 1 && cn[0] == '.') || (len == 2 && cn[0] == '.' && cn[1] == '.')) {
		return false;
	}
	if (module_off != NULL)
		*module_off = n_slash == 1 ? slash + 1 : 0;
	return true;
}
