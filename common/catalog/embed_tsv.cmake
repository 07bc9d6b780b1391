# cmake -DINPUT=catalog.tsv -DOUTPUT=catalog_data.inc -P embed_tsv.cmake
# Writes the file as one raw string literal; the delimiter cannot occur in a tab-separated table.
file(READ ${INPUT} content)
if(content MATCHES "\\)BMTSV\"")
  message(FATAL_ERROR "${INPUT} contains the raw-string delimiter )BMTSV\"")
endif()
file(WRITE ${OUTPUT}.tmp "R\"BMTSV(${content})BMTSV\"\n")
file(RENAME ${OUTPUT}.tmp ${OUTPUT})
