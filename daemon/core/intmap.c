/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#include "intmap.h"

static size_t slot_of(uint64_t key, size_t capacity) {
        /* Fibonacci hashing spreads consecutive keys (bus numbers, group
         * numbers) over the table. */
        return (size_t) ((key * UINT64_C(0x9E3779B97F4A7C15)) >> 17) & (capacity - 1);
}

void *intmap_get(const IntMap *m, uint64_t key) {
        if (m->n == 0)
                return NULL;
        for (size_t i = slot_of(key, m->capacity);; i = (i + 1) & (m->capacity - 1)) {
                if (!m->values[i])
                        return NULL;
                if (m->keys[i] == key)
                        return m->values[i];
        }
}

static int resize(IntMap *m, size_t capacity) {
        uint64_t *keys = calloc(capacity, sizeof(uint64_t));
        void **values = calloc(capacity, sizeof(void *));

        if (!keys || !values) {
                free(keys);
                free(values);
                return -ENOMEM;
        }
        for (size_t k = 0; k < m->capacity; k++) {
                if (!m->values[k])
                        continue;
                size_t i = slot_of(m->keys[k], capacity);
                while (values[i])
                        i = (i + 1) & (capacity - 1);
                keys[i] = m->keys[k];
                values[i] = m->values[k];
        }
        free(m->keys);
        free(m->values);
        m->keys = keys;
        m->values = values;
        m->capacity = capacity;
        return 0;
}

int intmap_put(IntMap *m, uint64_t key, void *value) {
        /* At most three quarters full, so probe sequences stay short; a map
         * of every IOMMU group of a 16384-function machine then has room
         * for a burst of a thousand more without doubling. */
        if ((m->n + 1) * 4 > m->capacity * 3) {
                int r = resize(m, m->capacity ? m->capacity * 2 : 16);
                if (r < 0)
                        return r;
        }
        size_t i = slot_of(key, m->capacity);
        while (m->values[i] && m->keys[i] != key)
                i = (i + 1) & (m->capacity - 1);
        if (!m->values[i])
                m->n++;
        m->keys[i] = key;
        m->values[i] = value;
        return 0;
}

void *intmap_remove(IntMap *m, uint64_t key) {
        if (m->n == 0)
                return NULL;
        size_t mask = m->capacity - 1, i = slot_of(key, m->capacity);
        while (m->values[i] && m->keys[i] != key)
                i = (i + 1) & mask;
        if (!m->values[i])
                return NULL;
        void *value = m->values[i];
        m->values[i] = NULL;
        m->n--;
        bool shrink = m->capacity > 64 && m->n * 8 < m->capacity;

        /* Backward shift: move later entries of the probe run into the hole
         * when their home slot is at or before it, so lookups never stop
         * early at an emptied slot. */
        for (size_t j = (i + 1) & mask; m->values[j]; j = (j + 1) & mask) {
                size_t home = slot_of(m->keys[j], m->capacity);
                bool between = i <= j ? (home > i && home <= j) : (home > i || home <= j);
                if (between)
                        continue;
                m->keys[i] = m->keys[j];
                m->values[i] = m->values[j];
                m->values[j] = NULL;
                i = j;
        }
        /* Down to an eighth full (most of a machine went): give the room
         * back. A failure to shrink changes nothing. */
        if (shrink)
                (void) resize(m, m->capacity / 4);
        return value;
}

void intmap_done(IntMap *m) {
        free(m->keys);
        free(m->values);
        *m = (IntMap) {};
}
