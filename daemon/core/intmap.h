/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A small hash map from integer keys to pointers (open addressing, linear
 * probing, deletion by backward shift): reset domains by their key, IOMMU
 * groups by number. Lookups, inserts and removals are O(1) on average, so
 * a change costs what it changes whatever the size of the machine. */
#pragma once

#include <stddef.h>
#include <stdint.h>

typedef struct IntMap {
        uint64_t *keys;
        void **values; /* NULL: an empty slot */
        size_t n, capacity;
} IntMap;

void *intmap_get(const IntMap *m, uint64_t key);
/* Replaces an existing value. value must not be NULL. -ENOMEM on failure. */
int intmap_put(IntMap *m, uint64_t key, void *value);
/* Returns the removed value, NULL if there was none. */
void *intmap_remove(IntMap *m, uint64_t key);
void intmap_done(IntMap *m);

/* Iteration over the occupied slots: for (size_t i = 0; i < m->capacity; i++) if (m->values[i]) ... */
