module github.com/mxsurvey/mxsurvey

go 1.26.8
